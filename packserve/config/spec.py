"""Re-export shim: the frozen spec types moved to the leaf module `packserve.model_spec`.

Kept only so branches written before the move keep importing; new code imports
`packserve.model_spec`. The backends may not import this module (.importlinter forbids it: it sits
in the config layer). Remove once no branch imports it.
"""

from packserve.model_spec import (
    BatchingPolicy,
    EnsembleStepSpec,
    InstanceGroupSpec,
    ModelSpec,
    QueuePolicy,
    TensorSpec,
    VersionPolicy,
)

__all__ = [
    "BatchingPolicy",
    "EnsembleStepSpec",
    "InstanceGroupSpec",
    "ModelSpec",
    "QueuePolicy",
    "TensorSpec",
    "VersionPolicy",
]
