"""Re-export shim: the config's JSON form moved to the leaf module `packserve.model_config_json`.

Kept only so branches written before the move keep importing; new code imports
`packserve.model_config_json`. The backends may not import this module (.importlinter forbids it:
it sits in the config layer). Remove once no branch imports it.
"""

from packserve.model_config_json import config_to_json

__all__ = ["config_to_json"]
