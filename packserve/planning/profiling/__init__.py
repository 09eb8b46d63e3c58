"""Measuring models for the profile: starts an in-process engine (and, for served pipelines, the
HTTP front end on a local port), drives it with generated inputs and reads device memory.

Writes only through `packserve.planning.formats`; the capacity model never imports this part.
"""
