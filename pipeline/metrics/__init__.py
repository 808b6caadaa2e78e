"""Evaluation of ternary detectors (``classification``: Table I metrics and the binary view), the files one
evaluation writes (``report``) and the summary tables and claims check (``tables``)."""
