"""Re-export shim: the message types moved to the leaf module `packserve.messages`.

Kept only so branches written before the move keep importing; new code imports
`packserve.messages`. The backends may not import this module (.importlinter forbids it: it sits in
the core layer). Remove once no branch imports it.
"""

from packserve.messages import InferRequest, InferResponse, RequestedOutput, RequestTiming, Tensor

__all__ = ["InferRequest", "InferResponse", "RequestTiming", "RequestedOutput", "Tensor"]
