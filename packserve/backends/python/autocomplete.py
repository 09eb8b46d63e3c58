"""`pb_utils.ModelConfig`: what a python model's `auto_complete_config` receives and returns.

It wraps the config in Triton's JSON form (a dict); the model may set max_batch_size, the dynamic
batcher, inputs and outputs. Errors are ValueError with Triton's wording, which the backend turns
into a ConfigError naming the model. Runs on the loader thread.
"""

from __future__ import annotations

import json
from typing import Any

_INPUT_PROPERTIES = ("name", "data_type", "dims", "optional")
_OUTPUT_PROPERTIES = ("name", "data_type", "dims")


class ModelConfig:
    def __init__(self, model_config: str | dict[str, Any]) -> None:
        document = json.loads(model_config) if isinstance(model_config, str) else model_config
        document.setdefault("input", [])
        document.setdefault("output", [])
        document.setdefault("max_batch_size", 0)
        self._model_config: dict[str, Any] = document

    def as_dict(self) -> dict[str, Any]:
        return self._model_config

    @property
    def _name(self) -> str:
        return str(self._model_config.get("name", ""))

    def set_max_batch_size(self, max_batch_size: int) -> None:
        current = int(self._model_config.get("max_batch_size", 0))
        if current > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {current}, but in auto-complete-config "
                f"function for model '{self._name}' specified max_batch_size {max_batch_size}"
            )
        self._model_config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        for scheduler in ("sequence_batching", "ensemble_scheduling"):
            if self._model_config.get(scheduler):
                raise ValueError(
                    f"Configuration specified scheduling_choice as '{scheduler}', but auto-complete-config "
                    f"function for model '{self._name}' tries to set scheduling_choice as 'dynamic_batching'"
                )
        if not self._model_config.get("dynamic_batching"):
            self._model_config["dynamic_batching"] = {}

    def add_input(self, input: dict[str, Any]) -> None:
        self._add_tensor("input", input, _INPUT_PROPERTIES)

    def add_output(self, output: dict[str, Any]) -> None:
        self._add_tensor("output", output, _OUTPUT_PROPERTIES)

    def set_model_transaction_policy(self, transaction_policy_dict: dict[str, Any]) -> None:
        for key in transaction_policy_dict:
            if key != "decoupled":
                raise ValueError(
                    f"model transaction property in auto-complete-config function for model "
                    f"'{self._name}' contains property other than 'decoupled'."
                )
        policy = self._model_config.setdefault("model_transaction_policy", {})
        if "decoupled" in transaction_policy_dict:
            wanted = bool(transaction_policy_dict["decoupled"])
            if "decoupled" in policy and bool(policy["decoupled"]) != wanted:
                raise ValueError(
                    f"trying to change decoupled property in auto-complete-config for model "
                    f"'{self._name}', which is already set to '{policy['decoupled']}'."
                )
            policy["decoupled"] = wanted

    def _add_tensor(self, role: str, tensor: dict[str, Any], allowed: tuple[str, ...]) -> None:
        label = f"{role} '{tensor.get('name', '')}' in auto-complete-config function for model '{self._name}'"
        extra = [key for key in tensor if key not in allowed]
        if extra:
            raise ValueError(f"{label} contains property other than {', '.join(repr(k) for k in allowed)}.")
        for required in ("name", "data_type", "dims"):
            if required not in tensor:
                raise ValueError(f"{label} is missing '{required}' property.")
        dims = [int(d) for d in tensor["dims"]]
        for current in self._model_config[role]:
            if current.get("name") != tensor["name"]:
                continue
            current_type = current.get("data_type", "TYPE_INVALID")
            if current_type not in ("TYPE_INVALID", tensor["data_type"]):
                raise ValueError(
                    f"unable to load model '{self._name}', configuration expects datatype {current_type} "
                    f"for {role} '{tensor['name']}', model provides {tensor['data_type']}"
                )
            current_dims = [int(d) for d in current.get("dims", [])]
            if current_dims and current_dims != dims:
                raise ValueError(
                    f"model '{self._name}', tensor '{tensor['name']}': the model expects dims {dims} "
                    f"but the model configuration specifies dims {current_dims}"
                )
            if "optional" in tensor and "optional" in current and current["optional"] != tensor["optional"]:
                raise ValueError(
                    f"model '{self._name}', tensor '{tensor['name']}': the model expects optional "
                    f"{tensor['optional']} but the model configuration specifies optional "
                    f"{current['optional']}"
                )
            current["data_type"] = tensor["data_type"]
            current["dims"] = dims
            if "optional" in tensor:
                current["optional"] = tensor["optional"]
            return
        self._model_config[role].append({**tensor, "dims": dims})
