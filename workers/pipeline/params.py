"""Each job kind's parameters, declared once: a frozen dataclass whose fields carry their bounds,
choices and help in metadata. The REST serializer and the forms derive from it
(webapp/jobs/params.py), and so does the guide's table (`manage.py kind_params`). The ids a job
names (artifact, dataset, …) are fields too. Light on purpose: the web process imports it, so it
imports nothing heavy, and the pipeline modules take their limits from here (conversion/config.py).

Metadata keys: min, max, choices (values, or (value, label) pairs), max_length, pattern (and
pattern_words, what a value that does not match is told), help,
max_items and item_max_length (lists of text). A field without a default is required; a field
typed `X | None` accepts null."""

from dataclasses import MISSING, dataclass, field

from workers.pipeline.architectures import TRAINABLE
from workers.pipeline.text.configs import TEXT_ARCHITECTURES

# --- limits the pipeline checks as well -----------------------------------------------------------
OPSETS = range(11, 24)  # what OpenVINO's ONNX frontend and torch's exporters both know
MAX_NAME = 128  # an IR input or output name
NAME_PATTERN = rf"^[A-Za-z_][A-Za-z0-9_.:/-]{{0,{MAX_NAME - 1}}}$"
MODEL_NAME_MAX = 100  # registry.Model.name
QUEUES = ("train", "optimize")  # webapp/celery.py declares the queues; a test holds them equal
GPU_COUNTS = (1, 2, 4, 8)  # GPUs of one host a training may ask for (DistributedDataParallel beyond 1)


def gpu_queue(gpus: int) -> str:
    """Where a training that needs `gpus` GPUs of one host waits: `train`, or `train_gpus_<n>`,
    which only a worker that owns at least n GPUs consumes (workers/gpus.py)."""
    return "train" if gpus == 1 else f"train_gpus_{gpus}"


GPU_QUEUES = tuple(gpu_queue(n) for n in GPU_COUNTS if n > 1)
AUGMENTS = ("none", "light", "standard", "strong")  # workers/pipeline/augment.py; a test holds them equal
MATRIX_POINTS_MAX = 16
MAX_TOKENS = 4096  # a text model's sequence length; its own maximum is checked in the jail
SEED_MAX = 2**32 - 1  # what numpy takes as a seed (torch takes 64 bits); training.py checks the same bound
DIMENSION = r"^(dynamic|[1-9][0-9]{0,3})$"  # a text model's batch or sequence length: dynamic, or 1 to 9999
DIMENSION_WORDS = "Write “dynamic”, or a whole number from 1 to 9999."


def param(default=MISSING, *, help: str = "", **limits):
    """A dataclass field with its limits in metadata; a list default is copied for each instance."""
    metadata = {"help": help, **limits}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def ids(help: str = "", *, optional: bool = False):
    """The id of a row a job names (a dataset, an artifact)."""
    return param(None, min=1, help=help) if optional else param(min=1, help=help)


@dataclass(frozen=True)
class ProbeParams:
    rounds: int = param(10, min=1, max=1000)
    seconds_per_round: float = param(1.0, min=0.05, max=60)
    matrix_size: int = param(512, min=16, max=8192)
    queue: str = param("optimize", choices=QUEUES, help="Which kind of worker to measure.")


@dataclass(frozen=True)
class DatasetImportParams:
    dataset: int = ids()


@dataclass(frozen=True)
class ModelImportParams:
    artifact: int = ids()
    format: str = param("", max_length=20, help="As the user declared it; empty: detect.")


@dataclass(frozen=True)
class ConvertParams:
    artifact: int = ids("The PyTorch or ONNX artifact to convert.")
    route: str = param("auto", choices=(("auto", "Direct, else via ONNX"), ("direct", "Direct"), ("onnx", "Via ONNX")))
    shape: str = param("static", choices=(("static", "Static"), ("dynamic_batch", "Dynamic batch"),
                                          ("dynamic", "Fully dynamic")))
    input_height: int | None = param(None, min=8, max=4096, help="Default: the model's input size.")
    input_width: int | None = param(None, min=8, max=4096)
    input_name: str = param("", pattern=NAME_PATTERN, max_length=MAX_NAME, help="Default: the source's.")
    output_name: str = param("", pattern=NAME_PATTERN, max_length=MAX_NAME, help="Default: the source's.")
    precision: str = param("fp32", choices=(("fp32", "FP32"), ("fp16", "FP16-compressed weights")))
    opset: int = param(17, min=OPSETS.start, max=OPSETS.stop - 1, help="For the ONNX route.")
    embed_preprocessing: bool = param(False, help="The IR takes u8 NHWC images of any size.")
    dataset: int | None = ids("Check equivalence on this dataset's validation images (else random inputs).",
                              optional=True)
    samples: int = param(4, min=1, max=256, help="How many inputs the IR and its source both run on in the check.")
    tolerance: float | None = param(None, min=0, help="Largest difference allowed; default 1e-4 (FP32), 1e-2 (FP16).")
    batch: str = param("dynamic", pattern=DIMENSION, pattern_words=DIMENSION_WORDS, max_length=8,
                       help="Text models: “dynamic” or a fixed batch size.")
    sequence_length: str = param("dynamic", pattern=DIMENSION, pattern_words=DIMENSION_WORDS, max_length=8,
                                 help="Text models: “dynamic” or a fixed number of tokens.")
    tokenizer_ir: bool = param(False, help="Text models: also the tokenizer as an OpenVINO IR "
                                           "(openvino-tokenizers), so the deployed model takes strings.")


@dataclass(frozen=True)
class TrainParams:
    """Training settings; empty ones take the architecture's defaults (workers/pipeline/training.py,
    and for a text dataset workers/pipeline/text/training.py, which takes the settings marked Text)."""

    dataset: int = ids()
    model_name: str = param(max_length=MODEL_NAME_MAX)
    init_artifact: int | None = ids("Fine-tune from this state_dict or TorchScript artifact (images), or this "
                                    "transformers artifact (text).", optional=True)
    architecture: str = param("resnet18", choices=TRAINABLE + tuple(TEXT_ARCHITECTURES),
                              help="Text from scratch: a built-in BERT shape (bert-mini when a text dataset is "
                                   "given without one).")
    epochs: int = param(10, min=1, max=10_000)
    batch_size: int = param(32, min=1, max=4096)
    lr: float | None = param(None, min=1e-8, max=10)
    optimizer: str = param("adamw", choices=("adamw", "sgd"))
    momentum: float = param(0.9, min=0, max=0.999)
    weight_decay: float | None = param(None, min=0, max=1)
    schedule: str = param("cosine", choices=("cosine", "step", "constant"))
    warmup_epochs: float = param(0, min=0, help="At most the number of epochs.")
    step_size: int = param(10, min=1)
    gamma: float = param(0.1, min=0.0001, max=1)
    label_smoothing: float = param(0, min=0, max=0.99)
    augment: str = param("standard", choices=AUGMENTS)
    flip: bool = param(False, help="Random horizontal flips: right for most photos, wrong for digits and text.")
    input_size: int | None = param(None, min=8, max=1024)
    seed: int = param(0, min=0, max=SEED_MAX)
    early_stopping_patience: int = param(0, min=0, help="0: off.")
    amp: bool = param(True, help="Mixed precision on CUDA workers: bf16 where the GPU has it, else fp16.")
    workers: int | None = param(None, min=0, max=64, help="Data-loader processes; empty: one per core of the "
                                                           "worker but one, at most 8.")
    checkpoint_minutes: float = param(5, min=0, max=1440, help="Images: a checkpoint this often while training, "
                                                                 "even mid-epoch; 0: after every epoch.")
    gpus: int = param(1, choices=GPU_COUNTS, help="Images: GPUs of one host that train together "
                                                  "(DistributedDataParallel); batch_size is per GPU.")
    pretrained: bool = param(True, help="Images: torchvision weights, when the worker's cache has them. Text: the "
                                        "fine-tuned model's weights; off, its config with random weights.")
    max_length: int | None = param(None, min=8, max=8192, help="Text: tokens a row is cut to; default 128, or the "
                                                                "model's maximum if less.")
    keep_best_on_cancel: bool = param(False, help="A cancelled run keeps its best epoch as an artifact.")


@dataclass(frozen=True)
class QuantizeParams:
    """INT8 quantization with NNCF (workers/pipeline/quantization.py and qat.py)."""

    artifact: int = ids("The FP32/FP16 model to quantize.")
    dataset: int = ids("Calibration from its train split, accuracy on its val split.")
    method: str = param("ptq", choices=(("ptq", "Post-training (INT8)"), ("accuracy", "Post-training with accuracy control"),
                                       ("qat", "Quantization-aware training")))
    subset_size: int = param(300, min=10, max=10_000, help="Calibration images.")
    preset: str = param("performance", choices=(("performance", "Performance"), ("mixed", "Mixed")))
    fast_bias_correction: bool = param(True)
    model_type: str = param("", choices=(("", "Any"), ("transformer", "Transformer")))
    ignored_scope: list[str] = param([], max_items=500, item_max_length=500,
                                     help="Layers kept in floating point: node names, or regular expressions "
                                          "written re:<pattern>.")
    max_drop: float = param(1.0, min=0.01, max=50,
                            help="Accuracy control: top-1 points (absolute) or percent of FP32 top-1 (relative).")
    drop_type: str = param("absolute", choices=(("absolute", "Absolute"), ("relative", "Relative")))
    metric: str = param("accuracy", choices=(("accuracy", "Accuracy (top-1)"), ("macro_f1", "Macro-F1")),
                        help="Accuracy control: the score whose drop is bounded (macro-F1 weighs every class alike).")
    max_length: int | None = param(None, min=8, max=MAX_TOKENS,
                                   help="Text models: tokens per row (longer rows are cut). Default: the model's "
                                        "maximum (its fixed length, where it has one).")
    epochs: int = param(3, min=1, max=1000, help="Quantization-aware training.")
    batch_size: int = param(32, min=1, max=4096)
    lr: float | None = param(None, min=1e-8, max=10, help="Default: a tenth of the architecture's training rate.")
    augment: str = param("light", choices=AUGMENTS)
    flip: bool = param(False, help="Random horizontal flips: right for most photos, wrong for digits and text.")
    workers: int | None = param(None, min=0, max=64, help="Data-loader processes; empty: one per core of the "
                                                           "worker but one, at most 8.")
    seed: int = param(0, min=0, max=SEED_MAX)


@dataclass(frozen=True)
class MatrixPoint:
    batch: int = param(min=1, max=256)
    streams: int = param(min=1, max=64)


@dataclass(frozen=True)
class BenchmarkParams:
    """Speed of one artifact on one worker (workers/pipeline/benchmark.py)."""

    artifact: int = ids()
    device: str = param("CPU", choices=(("CPU", "CPU"), ("GPU", "GPU (a worker whose OpenVINO sees one)")))
    seconds: float = param(10, min=1, max=300, help="Per measurement, all its rounds together.")
    rounds: int = param(3, min=3, max=20, help="Each figure is the median of this many rounds, the measurements "
                                                "taking turns.")
    hints: frozenset[str] = param(["latency", "throughput"], choices=(("latency", "Latency"), ("throughput", "Throughput")))
    matrix: list[MatrixPoint] = param([], max_items=MATRIX_POINTS_MAX, help="Batch × streams points, measured too.")
    layer_counters: bool = param(True, help="Time and precision per layer (IR).")
    torch_reference: bool = param(True, help="Also torch eager of the PyTorch source.")
    reference: int | None = ids("Set by the service: the PyTorch artifact measured beside it.", optional=True)
    batch: int = param(1, min=1, max=256, help="Text models: rows per inference.")
    sequence_length: int = param(128, min=1, max=MAX_TOKENS, help="Text models: tokens per row (its fixed length, "
                                                                   "where the IR has one).")


@dataclass(frozen=True)
class EvaluateParams:
    """Top-1, top-5 and the confusion matrix of one artifact on a dataset split (of a text model:
    accuracy, macro-F1 and per class)."""

    artifact: int = ids()
    dataset: int = ids()
    split: str = param("val", choices=(("val", "Validation"), ("test", "Test"), ("train", "Train")))
    max_length: int | None = param(None, min=8, max=MAX_TOKENS,
                                   help="Text models: tokens per row (longer rows are cut). Default: the model's "
                                        "maximum.")
