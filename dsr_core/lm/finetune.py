"""Fine-tuning an LM through its provider, as DSPy's ``LM.finetune``: ``lm.finetune(train_data)`` returns a
``TrainingJob`` (a ``concurrent.futures.Future``) whose result is a new LM for the fine-tuned model.

DSPy's shapes are kept (``Provider``, ``TrainingJob``, ``OpenAIProvider``, ``TrainingStatus``,
``TrainDataFormat``), so code written against ``dspy.clients`` works. What differs is where the provider
talks to: DSPy's OpenAI provider uses the ``openai`` module's global client, while here it uses the LM's own
endpoint and key (the ones ``resolve_endpoint`` chose when the LM was made), so a local or proxied
OpenAI-compatible server fine-tunes the same way. The training data is uploaded from memory as JSONL (one
``{"messages": [...]}`` per line): nothing is left on disk, and nothing but the records is in the file.

A job that ends ``failed`` or ``cancelled`` makes ``job.result()`` raise ``FinetuneJobError`` naming the
job id, its status and the server's message (DSPy hands the exception back as the result instead; raising
is what a ``Future`` does). Every error passes through the LM's redaction: the key never reaches one.

dsr's ``LM`` has no ``provider=`` argument for training (its ``provider`` is the endpoint it resolved), so
the training provider is ``lm.training_provider`` when set, else inferred from the model name as DSPy's
``infer_provider`` does: ``openai/...`` (any model on an OpenAI-compatible endpoint) and ``ft:...`` are
``OpenAIProvider``'s.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, InvalidStateError
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..errors import DsrError

if TYPE_CHECKING:
    import openai

    from .client import LM

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 20.0  # seconds between status checks, DSPy's ``poll_frequency``
TRAINING_FILE_NAME = "train.jsonl"


class TrainingStatus(StrEnum):
    not_started = "not_started"
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class TrainDataFormat(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"
    GRPO_CHAT = "grpo_chat"


TERMINAL_STATUSES = frozenset({TrainingStatus.succeeded, TrainingStatus.failed, TrainingStatus.cancelled})
# OpenAI's job statuses, as DSPy reads them
OPENAI_STATUSES = {
    "validating_files": TrainingStatus.pending,
    "queued": TrainingStatus.pending,
    "running": TrainingStatus.running,
    "succeeded": TrainingStatus.succeeded,
    "failed": TrainingStatus.failed,
    "cancelled": TrainingStatus.cancelled,
}


class FinetuneError(DsrError):
    """Fine-tuning could not be started or followed: an unsupported provider or data format, or a request
    to the provider that failed (the message names the step and the endpoint, never the key)."""


class FinetuneJobError(FinetuneError):
    """A fine-tuning job ended without a model: ``job_id``, its ``status`` and the server's ``message``."""

    def __init__(self, message: str, *, job_id: str, status: str, server_message: str | None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status
        self.server_message = server_message


def infer_data_format(adapter: Any) -> TrainDataFormat:
    """DSPy's rule: a chat-format adapter's calls are chat data. dsr's JSONAdapter is not a ChatAdapter
    subclass as DSPy's is, so it is named too; any other adapter has no known format."""
    from ..adapters import ChatAdapter, JSONAdapter

    if isinstance(adapter, (ChatAdapter, JSONAdapter)):
        return TrainDataFormat.CHAT
    raise ValueError(f"Could not infer the data format for: {adapter}")


class TrainingJob(Future):
    """A future for one fine-tuning job (DSPy's): ``result()`` is the fine-tuned LM; ``status()`` asks the
    provider; ``cancel()`` stops the job. ``lm`` is the LM being fine-tuned (dsr's addition: a provider
    reaches the endpoint through it)."""

    def __init__(
        self,
        thread: threading.Thread | None = None,
        model: str | None = None,
        train_data: list[dict[str, Any]] | None = None,
        train_data_format: TrainDataFormat | str | None = None,
        train_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.thread = thread
        self.model = model
        self.train_data = train_data
        self.train_data_format = train_data_format
        self.train_kwargs = train_kwargs or {}
        self.lm: LM | None = None
        super().__init__()

    def cancel(self) -> bool:
        """Cancel the future (a subclass cancels the provider's job first, then calls this)."""
        return super().cancel()

    def status(self) -> Any:
        raise NotImplementedError


class Provider:
    """A training/launch provider (DSPy's): this base one fine-tunes nothing."""

    def __init__(self) -> None:
        self.finetunable = False
        self.reinforceable = False
        self.TrainingJob: type[TrainingJob] = TrainingJob

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @staticmethod
    def is_provider_model(model: str) -> bool:
        return False

    @staticmethod
    def launch(lm: Any, launch_kwargs: dict[str, Any] | None = None) -> None:
        """Nothing to launch for a hosted endpoint."""

    @staticmethod
    def kill(lm: Any, launch_kwargs: dict[str, Any] | None = None) -> None:
        """Nothing to kill for a hosted endpoint."""

    def finetune(
        self,
        job: TrainingJob,
        model: str,
        train_data: list[dict[str, Any]],
        train_data_format: TrainDataFormat | str | None,
        train_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """Train ``model`` on ``train_data``; the fine-tuned model's name."""
        raise NotImplementedError


class TrainingJobOpenAI(TrainingJob):
    """A job on an endpoint with OpenAI's fine-tuning API; ``provider_file_id`` and ``provider_job_id`` are
    the server's ids once the file is uploaded and the job created."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.provider_file_id: str | None = None
        self.provider_job_id: str | None = None
        self.cancel_requested = threading.Event()  # the polling thread stops waiting once it is set

    def cancel(self) -> bool:
        """Cancel the future, then the server's job, and delete its training file. A job that already
        finished cannot be cancelled: that is an error naming it, as in DSPy. The future goes first (DSPy
        cancels it last) so that the polling thread, woken by the cancellation, cannot complete it meanwhile;
        a job cancelled before the server had created it is cancelled by that thread once it has."""
        if self.provider_job_id is not None and self.lm is not None:
            if self.status() in TERMINAL_STATUSES:
                raise FinetuneError(
                    f"Jobs that are complete cannot be canceled. Job with ID {self.provider_job_id} is done."
                )
        if not super().cancel():
            return False
        self.cancel_requested.set()
        self.cancel_remote()
        return True

    def cancel_remote(self) -> None:
        """Cancel the server's job (if it has one yet) and delete the training file (best effort)."""
        if self.lm is None:
            return
        with openai_client(self.lm) as client:
            if self.provider_job_id is not None:
                call(self.lm, "cancelling the fine-tuning job", client.fine_tuning.jobs.cancel, self.provider_job_id)
            if self.provider_file_id is not None:
                try:
                    client.files.delete(self.provider_file_id)
                except Exception as exc:  # noqa: BLE001 - the file may be gone already; the job is what matters
                    log.info("could not delete training file %s: %s", self.provider_file_id, self.lm._redact(str(exc)))
                self.provider_file_id = None

    def status(self) -> TrainingStatus:
        if self.provider_job_id is None or self.lm is None:
            return TrainingStatus.not_started
        with openai_client(self.lm) as client:
            remote = call(
                self.lm, "retrieving the fine-tuning job", client.fine_tuning.jobs.retrieve, self.provider_job_id
            )
        return OPENAI_STATUSES.get(remote.status, TrainingStatus.pending)


class OpenAIProvider(Provider):
    """OpenAI's fine-tuning API, on the LM's endpoint: upload the JSONL file, create the job with
    ``hyperparameters=train_kwargs`` (as DSPy passes them), poll it every ``poll_interval`` seconds until it
    ends, and name the fine-tuned model."""

    def __init__(self, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        super().__init__()
        if poll_interval < 0:
            raise ValueError("poll_interval must be nonnegative")
        self.finetunable = True
        self.TrainingJob = TrainingJobOpenAI
        self.poll_interval = poll_interval

    @staticmethod
    def is_provider_model(model: str) -> bool:
        return model.startswith(("openai/", "ft:"))

    def finetune(  # type: ignore[override]
        self,
        job: TrainingJobOpenAI,
        model: str,
        train_data: list[dict[str, Any]],
        train_data_format: TrainDataFormat | str | None,
        train_kwargs: dict[str, Any] | None = None,
    ) -> str:
        if job.lm is None:
            raise FinetuneError("OpenAIProvider.finetune needs the job's LM (start jobs with lm.finetune)")
        lm = job.lm
        validate_data_format(train_data_format)
        with openai_client(lm) as client:
            return self._train(job, client, model, train_data, train_kwargs)

    def _train(
        self,
        job: TrainingJobOpenAI,
        client: openai.OpenAI,
        model: str,
        train_data: list[dict[str, Any]],
        train_kwargs: dict[str, Any] | None,
    ) -> str:
        """Upload, create the job, wait for it: the fine-tuned model's name."""
        lm = job.lm
        assert lm is not None
        upload = call(
            lm,
            "uploading the training file",
            client.files.create,
            file=(TRAINING_FILE_NAME, jsonl(train_data)),
            purpose="fine-tune",
        )
        job.provider_file_id = upload.id
        remote = call(
            lm,
            "creating the fine-tuning job",
            client.fine_tuning.jobs.create,
            model=model.removeprefix("openai/"),
            training_file=upload.id,
            hyperparameters=dict(train_kwargs or {}),
        )
        job.provider_job_id = remote.id
        log.info("fine-tuning %s: job %s started on %s", model, remote.id, lm._endpoint())
        if job.cancel_requested.is_set():  # cancelled while the job was being created
            job.cancel_remote()
        return self.wait_for_job(job, client)

    def wait_for_job(self, job: TrainingJobOpenAI, client: openai.OpenAI) -> str:
        """Poll until the job ends; the fine-tuned model's name, or FinetuneJobError for a job that failed or
        was cancelled."""
        assert job.lm is not None and job.provider_job_id is not None
        while True:
            remote = call(
                job.lm, "retrieving the fine-tuning job", client.fine_tuning.jobs.retrieve, job.provider_job_id
            )
            status = OPENAI_STATUSES.get(remote.status, TrainingStatus.pending)
            if status in TERMINAL_STATUSES:
                break
            if job.cancel_requested.wait(self.poll_interval):
                status = TrainingStatus.cancelled
                break
        if status is TrainingStatus.succeeded and remote.fine_tuned_model:
            log.info("fine-tuning job %s succeeded: %s", remote.id, remote.fine_tuned_model)
            return str(remote.fine_tuned_model)
        raise job_error(job.lm, job.provider_job_id, status.value, remote)


def validate_data_format(data_format: TrainDataFormat | str | None) -> None:
    """OpenAI's API takes chat and completion data (DSPy's check)."""
    if data_format not in (TrainDataFormat.CHAT, TrainDataFormat.COMPLETION):
        raise FinetuneError(f"OpenAI does not support the data format {data_format}.")


def jsonl(records: list[dict[str, Any]]) -> bytes:
    """The training file: one JSON record per line (orjson, as DSPy writes it)."""
    import orjson

    return b"".join(orjson.dumps(record) + b"\n" for record in records)


def openai_client(lm: LM) -> openai.OpenAI:
    """A synchronous SDK client for the LM's endpoint, with its key, timeout and retries (the job runs in a
    thread of its own, not on an event loop)."""
    import openai

    return openai.OpenAI(api_key=lm._api_key(), base_url=lm.api_base, timeout=lm.timeout, max_retries=lm.num_retries)


def call(lm: LM, step: str, method: Any, *args: Any, **kwargs: Any) -> Any:
    """One request to the provider; an SDK failure becomes a FinetuneError naming the step and the endpoint,
    redacted as the LM redacts (a server may echo the key it was sent)."""
    import openai

    from .failures import describe

    try:
        return method(*args, **kwargs)
    except (openai.APIConnectionError, openai.APIStatusError) as exc:
        raise FinetuneError(f"{lm.model}: {step} at {lm._endpoint()} failed: {lm._redact(describe(exc))}") from None


def job_error(lm: LM, job_id: str, status: str, remote: Any) -> FinetuneJobError:
    """The error of a job that ended without a model: its id, status and the server's message."""
    error = getattr(remote, "error", None)
    said = getattr(error, "message", None) if error is not None else None
    said = lm._redact(str(said)) if said else None
    detail = f": {said}" if said else " (the server gave no message)"
    return FinetuneJobError(
        f"fine-tuning job {job_id} for {lm.model} ended with status {status!r}{detail}",
        job_id=job_id,
        status=status,
        server_message=said,
    )


def infer_provider(lm: LM) -> Provider:
    """The LM's training provider: ``lm.training_provider`` when set, else DSPy's ``infer_provider`` rule
    on the model name with its provider prefix."""
    chosen = getattr(lm, "training_provider", None)
    if chosen is not None:
        return chosen  # type: ignore[no-any-return]
    if OpenAIProvider.is_provider_model(lm.qualified_model):
        return OpenAIProvider()
    return Provider()


def start_finetune(
    lm: LM,
    train_data: list[dict[str, Any]],
    train_data_format: TrainDataFormat | str | None = None,
    train_kwargs: dict[str, Any] | None = None,
) -> TrainingJob:
    """``LM.finetune``: start the provider's job in a thread; the job's result is a copy of ``lm`` (same
    endpoint, key and settings) for the fine-tuned model."""
    provider = infer_provider(lm)
    if not provider.finetunable:
        raise FinetuneError(
            f"Provider {provider} does not support fine-tuning {lm.qualified_model}; for an endpoint with "
            "OpenAI's fine-tuning API set lm.training_provider = OpenAIProvider() first"
        )
    job = provider.TrainingJob(
        model=getattr(lm, "finetuning_model", None) or lm.model,
        train_data=train_data,
        train_data_format=train_data_format or TrainDataFormat.CHAT,
        train_kwargs=train_kwargs or getattr(lm, "train_kwargs", None) or {},
    )
    job.lm = lm
    job.thread = threading.Thread(target=run_job, args=(provider, job), name=f"finetune-{lm.model}", daemon=True)
    job.thread.start()
    return job


def run_job(provider: Provider, job: TrainingJob) -> None:
    """The job's thread: the provider trains, the future gets the fine-tuned LM or the error (unless the
    future was cancelled meanwhile)."""
    assert job.lm is not None and job.model is not None
    try:
        name = provider.finetune(
            job=job,
            model=job.model,
            train_data=job.train_data or [],
            train_data_format=job.train_data_format,
            train_kwargs=job.train_kwargs,
        )
        outcome: Any = job.lm.copy(model=f"{job.lm.provider.name}/{name}")
    except Exception as exc:  # noqa: BLE001 - handed to whoever waits on the future
        outcome = exc
    if job.cancelled():
        return  # cancelled by its caller: nobody waits for an outcome
    if isinstance(outcome, Exception):
        log.error("%s", outcome)
    try:
        if isinstance(outcome, Exception):
            job.set_exception(outcome)
        else:
            job.set_result(outcome)
    except InvalidStateError:  # cancelled between the check and now
        pass


__all__ = [
    "FinetuneError",
    "FinetuneJobError",
    "OpenAIProvider",
    "Provider",
    "TrainDataFormat",
    "TrainingJob",
    "TrainingJobOpenAI",
    "TrainingStatus",
    "infer_data_format",
    "infer_provider",
    "start_finetune",
]
