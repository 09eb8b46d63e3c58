"""What `packserve deploy k8s` is given, checked before any manifest is written: names Kubernetes
accepts, image references a container runtime can pull, replica counts a cluster can hold.

Every check raises InvalidArgumentError naming the flag and the rule, so the CLI prints one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packserve.errors import InvalidArgumentError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# DNS-1123 subdomain: what a PersistentVolumeClaim's name must be.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The distribution reference grammar, shortened: [registry[:port]/]path[:tag][@digest].
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
# More replicas than this of one pod type is a typo or a plan for another scale of problem; a
# cluster's own limits (nodes, quota) come far earlier.
MAX_REPLICAS = 1000


@dataclass(frozen=True, slots=True)
class ReplicaBounds:
    """HPA bounds given on the command line; None = from the plan (base load / peak)."""

    minimum: int | None = None
    maximum: int | None = None


def check_dns_label(flag: str, value: str, max_length: int = 40) -> None:
    if not _DNS_LABEL.match(value) or len(value) > max_length:
        raise InvalidArgumentError(
            f"{flag} '{value}' must be a DNS label (a-z, 0-9, '-', at most {max_length} chars)"
        )


def check_pvc_name(flag: str, value: str) -> None:
    if not _DNS_SUBDOMAIN.match(value) or len(value) > 253:
        raise InvalidArgumentError(
            f"{flag} '{value}' is not a PersistentVolumeClaim name (DNS-1123: lower-case a-z, 0-9, "
            "'-' and '.', starting and ending alphanumeric)"
        )


def check_image(flag: str, value: str) -> None:
    if not value:
        raise InvalidArgumentError(f"{flag} must name a container image")
    if len(value) > 512 or not _IMAGE.match(value):
        raise InvalidArgumentError(
            f"{flag} '{value}' is not an image reference ([registry/]name[:tag][@sha256:digest], "
            "no spaces, lower-case path)"
        )


def check_replicas(flag: str, value: int) -> None:
    if not 1 <= value <= MAX_REPLICAS:
        raise InvalidArgumentError(f"{flag} {value} is out of range: give 1 to {MAX_REPLICAS}")


def check_bounds(bounds: ReplicaBounds) -> None:
    if bounds.minimum is not None:
        check_replicas("--min-replicas", bounds.minimum)
    if bounds.maximum is not None:
        check_replicas("--max-replicas", bounds.maximum)
    if bounds.minimum is not None and bounds.maximum is not None and bounds.minimum > bounds.maximum:
        raise InvalidArgumentError(
            f"--min-replicas {bounds.minimum} is above --max-replicas {bounds.maximum}"
        )
