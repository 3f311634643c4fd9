"""Resuming: crash-safe checkpoints after every epoch, and continuing a run from the latest one.

See docs/checkpoints.md. `open_session` gives the runner its hooks; `ResumeStore` reads and
writes the checkpoint folder; `plan_changes` (in the compiler) says what changed since.
"""

from stagegraph.runtime.resume.session import ResumeSession, open_session
from stagegraph.runtime.resume.store import (
    INDEX,
    KEEP,
    RESUME_FORMAT,
    CheckpointProblem,
    ResumeStore,
    file_name,
    load_checkpoint,
)

__all__ = [
    "INDEX",
    "KEEP",
    "RESUME_FORMAT",
    "CheckpointProblem",
    "ResumeSession",
    "ResumeStore",
    "file_name",
    "load_checkpoint",
    "open_session",
]
