from __future__ import annotations

import pytest

from packserve.config.ensemble_graph import check_ensemble_dataflow, validate_ensemble
from packserve.errors import ConfigError
from packserve.model_spec import (
    EnsembleStepSpec,
    ModelSpec,
    TensorSpec,
    VersionPolicy,
)
from packserve.types import DataType

FP32, UINT8 = DataType.FP32, DataType.UINT8


def _tensor(
    name: str, dims: tuple[int, ...], datatype: DataType = FP32, optional: bool = False
) -> TensorSpec:
    return TensorSpec(name=name, datatype=datatype, dims=dims, optional=optional)


def _model(
    name: str,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    max_batch_size: int = 8,
    steps: tuple[EnsembleStepSpec, ...] = (),
) -> ModelSpec:
    return ModelSpec(
        name=name,
        platform="ensemble" if steps else "onnxruntime_onnx",
        backend="" if steps else "onnxruntime",
        max_batch_size=max_batch_size,
        inputs=inputs,
        outputs=outputs,
        dynamic_batching=None,
        instance_groups=(),
        version_policy=VersionPolicy(),
        default_model_filename="",
        ensemble_steps=steps,
    )


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> EnsembleStepSpec:
    return EnsembleStepSpec(model_name=model, model_version=-1, input_map=inputs, output_map=outputs)


# image (UINT8 HxWx3) -> preprocess -> tensor (FP32 3x224x224) -> classifier -> scores (FP32 1000)
MODELS = {
    "preprocess": _model(
        "preprocess", (_tensor("IMAGE", (-1, -1, 3), UINT8),), (_tensor("PIXELS", (3, 224, 224)),)
    ),
    "classifier": _model("classifier", (_tensor("input", (3, -1, -1)),), (_tensor("logits", (1000,)),), 16),
}
PIPELINE_STEPS = (
    _step("preprocess", {"IMAGE": "raw"}, {"PIXELS": "pixels"}),
    _step("classifier", {"input": "pixels"}, {"logits": "scores"}),
)


def _pipeline(
    steps: tuple[EnsembleStepSpec, ...] = PIPELINE_STEPS,
    inputs: tuple[TensorSpec, ...] = (_tensor("raw", (-1, -1, 3), UINT8),),
    outputs: tuple[TensorSpec, ...] = (_tensor("scores", (1000,)),),
    max_batch_size: int = 8,
) -> ModelSpec:
    return _model("pipeline", inputs, outputs, max_batch_size, steps)


def test_valid_pipeline_passes() -> None:
    validate_ensemble(_pipeline(), MODELS)


def test_unknown_step_model() -> None:
    steps = (PIPELINE_STEPS[0], _step("detector", {"input": "pixels"}, {"logits": "scores"}))
    with pytest.raises(ConfigError, match=r"ensemble 'pipeline' step 1 \(model 'detector'\): unknown model"):
        validate_ensemble(_pipeline(steps), MODELS)


def test_unknown_step_input_name() -> None:
    steps = (_step("preprocess", {"IMG": "raw"}, {"PIXELS": "pixels"}), PIPELINE_STEPS[1])
    with pytest.raises(
        ConfigError, match=r"step 0 \(model 'preprocess'\): model 'preprocess' has no input 'IMG'"
    ):
        validate_ensemble(_pipeline(steps), MODELS)


def test_unknown_step_output_name() -> None:
    steps = (PIPELINE_STEPS[0], _step("classifier", {"input": "pixels"}, {"probs": "scores"}))
    with pytest.raises(ConfigError, match=r"has no output 'probs' \(outputs: logits\)"):
        validate_ensemble(_pipeline(steps), MODELS)


def test_required_step_input_left_unmapped() -> None:
    models = dict(MODELS)
    models["classifier"] = _model(
        "classifier",
        (_tensor("input", (3, -1, -1)), _tensor("scale", (1,)), _tensor("hint", (1,), optional=True)),
        (_tensor("logits", (1000,)),),
        16,
    )
    with pytest.raises(ConfigError, match=r"step 1 \(model 'classifier'\): required input 'scale' is not"):
        validate_ensemble(_pipeline(), models)


def test_tensor_consumed_but_never_produced() -> None:
    steps = (PIPELINE_STEPS[0], _step("classifier", {"input": "pixelz"}, {"logits": "scores"}))
    with pytest.raises(
        ConfigError, match=r"step 1 \(model 'classifier'\) reads input 'input' from ensemble tensor 'pixelz'"
    ):
        check_ensemble_dataflow(_pipeline(steps))


def test_tensor_produced_twice() -> None:
    steps = (*PIPELINE_STEPS, _step("classifier", {"input": "pixels"}, {"logits": "scores"}))
    with pytest.raises(ConfigError, match=r"ensemble tensor 'scores', already produced by step 1"):
        check_ensemble_dataflow(_pipeline(steps))


def test_step_writing_an_ensemble_input() -> None:
    steps = (*PIPELINE_STEPS, _step("classifier", {"input": "pixels"}, {"logits": "raw"}))
    with pytest.raises(ConfigError, match=r"tensor 'raw', which is an ensemble input"):
        check_ensemble_dataflow(_pipeline(steps))


def test_cycle_between_steps() -> None:
    # a reads t2 and writes t1; b reads t1 and writes t2: neither can ever run
    steps = (
        PIPELINE_STEPS[0],
        _step("classifier", {"input": "t2"}, {"logits": "t1"}),
        _step("classifier", {"input": "t1"}, {"logits": "t2"}),
        _step("classifier", {"input": "pixels"}, {"logits": "scores"}),
    )
    outputs = (_tensor("scores", (1000,)), _tensor("t2", (1000,)))
    with pytest.raises(ConfigError, match=r"has a cycle among its steps: step 1 .*, step 2"):
        check_ensemble_dataflow(_pipeline(steps, outputs=outputs))


def test_ensemble_output_not_produced() -> None:
    outputs = (_tensor("scores", (1000,)), _tensor("boxes", (-1, 4)))
    with pytest.raises(
        ConfigError, match=r"ensemble 'pipeline' output\(s\) 'boxes' not produced by any step"
    ):
        check_ensemble_dataflow(_pipeline(outputs=outputs))


def test_unused_ensemble_input() -> None:
    inputs = (_tensor("raw", (-1, -1, 3), UINT8), _tensor("extra", (1,)))
    with pytest.raises(ConfigError, match=r"input\(s\) 'extra' not used by any step"):
        check_ensemble_dataflow(_pipeline(inputs=inputs))


def test_dangling_intermediate_tensor() -> None:
    steps = (*PIPELINE_STEPS, _step("classifier", {"input": "pixels"}, {"logits": "unused"}))
    with pytest.raises(ConfigError, match=r"tensor\(s\) 'unused' produced by a step but neither read"):
        check_ensemble_dataflow(_pipeline(steps))


def test_datatype_mismatch_names_both_ends() -> None:
    inputs = (_tensor("raw", (-1, -1, 3), FP32),)
    with pytest.raises(
        ConfigError,
        match=r"ensemble tensor 'raw': ensemble 'pipeline' input 'raw' is TYPE_FP32 but ensemble 'pipeline' "
        r"step 0 \(model 'preprocess'\) input 'IMAGE' expects TYPE_UINT8",
    ):
        validate_ensemble(_pipeline(inputs=inputs), MODELS)


def test_shape_mismatch() -> None:
    models = dict(MODELS)
    models["classifier"] = _model(
        "classifier", (_tensor("input", (3, 256, 256)),), (_tensor("logits", (1000,)),)
    )
    with pytest.raises(
        ConfigError,
        match=r"ensemble tensor 'pixels': .*output 'PIXELS' has shape \[-1, 3, 224, 224\] "
        r"but .*input 'input' expects \[-1, 3, 256, 256\]",
    ):
        validate_ensemble(_pipeline(), models)


def test_rank_mismatch_on_ensemble_output() -> None:
    outputs = (_tensor("scores", (1, 1000)),)
    with pytest.raises(ConfigError, match=r"ensemble 'pipeline' output 'scores' expects \[-1, 1, 1000\]"):
        validate_ensemble(_pipeline(outputs=outputs), MODELS)


def test_non_batching_ensemble_sees_full_shapes() -> None:
    # max_batch_size 0: the ensemble's dims include the batch dimension of the batching step models
    inputs = (_tensor("raw", (-1, -1, -1, 3), UINT8),)
    outputs = (_tensor("scores", (-1, 1000)),)
    validate_ensemble(_pipeline(inputs=inputs, outputs=outputs, max_batch_size=0), MODELS)


def test_ensemble_batch_above_step_model() -> None:
    with pytest.raises(
        ConfigError,
        match=r"step 0 \(model 'preprocess'\): ensemble max_batch_size 32 is above .* max_batch_size 8",
    ):
        validate_ensemble(_pipeline(max_batch_size=32), MODELS)


def test_ensemble_calling_itself() -> None:
    steps = (_step("pipeline", {"raw": "raw"}, {"scores": "scores"}),)
    with pytest.raises(ConfigError, match="calls the ensemble itself"):
        validate_ensemble(_pipeline(steps), MODELS)
