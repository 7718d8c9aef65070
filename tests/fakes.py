"""A Reporter for pipeline unit tests: records what the pipeline says, cancels on request."""


class FakeReporter:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.logs: list[tuple[str, str]] = []
        self.fractions: list[float] = []
        self.polls, self.cancel_after = 0, cancel_after  # cancel_after=0: cancelled from the start

    def log(self, message: str, *, level: str = "info") -> None:
        self.logs.append((level, message))

    def progress(self, fraction: float) -> None:
        self.fractions.append(fraction)

    def stage(self, name: str) -> None: ...

    def metric(self, name: str, value: float, *, step: int | None = None, summary: bool = False) -> None: ...

    def checkpoint(self, state: dict) -> None: ...

    def cancelled(self) -> bool:
        self.polls += 1
        return self.cancel_after is not None and self.polls > self.cancel_after
