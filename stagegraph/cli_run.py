"""`stagegraph run`'s last step: run a compiled plan with the runtime and report a failure as
where it happened and why, without a traceback unless asked. Only here does the CLI import torch.
"""

from __future__ import annotations

import sys
import traceback

from stagegraph.compiler import ExecutionPlan


def run_plan(plan: ExecutionPlan, *, check: bool, show_traceback: bool,
             resume: bool | str = False, allow_plan_change: bool = False,
             overwrite: bool = False, checkpoint_every: int | None = None) -> int:
    """Run ``plan``; a failure prints where it happened and its cause, not a traceback. A run
    stopped by SIGTERM or SIGUSR1 prints where and its checkpoint, and returns 75."""
    from stagegraph.runtime import Runner  # torch is imported here, and only here
    from stagegraph.runtime.errors import RunError, StagegraphRuntimeError, plain_warnings

    try:
        with plain_warnings():
            runner = Runner(plan, check=check, resume=resume, allow_plan_change=allow_plan_change,
                            overwrite=overwrite, checkpoint_every=checkpoint_every)
            # A group torchrun restarted says where it resumed once, on rank 0 (see `elastic`).
            if runner.resumed_from is not None and not runner.restarted:
                print(f"resuming from {runner.resumed_from}: {runner.resume_position}",
                      file=sys.stderr)
            runner.run()
    except StagegraphRuntimeError as err:  # PlanError, LogdirError, DeviceError, RunError...
        if isinstance(err, RunError):
            return _run_failed(err, show_traceback)
        print(f"cannot run: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        return _run_failed(err, show_traceback)
    if runner.stopped is not None:
        from stagegraph.runtime.resume.midepoch import EXIT_STOPPED

        print(f"stagegraph: {runner.stopped.message()}", file=sys.stderr)
        return EXIT_STOPPED
    return 0


def _run_failed(err: Exception, show_traceback: bool) -> int:
    cause = err.__cause__
    if isinstance(cause, KeyboardInterrupt):
        raise cause from None
    if show_traceback:
        traceback.print_exception(err)
    # A RunError already says where and why ("run failed at stage 'train', epoch 3, ...").
    message = str(err) if cause is not None else f"run failed: {type(err).__name__}: {err}"
    print(f"error: {message}", file=sys.stderr)
    described = f"{type(cause).__name__}: {cause}"
    if cause is not None and described not in message:
        print(f"  caused by {described}", file=sys.stderr)
    print("  hint: rerun with --traceback for the full Python traceback", file=sys.stderr)
    return 1
