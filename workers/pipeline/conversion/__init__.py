"""A prepared model (PyTorch or ONNX) becomes an OpenVINO IR (model.xml + model.bin), checked
against its source on the way out. No Django, no Celery.

Routes: "direct" hands the PyTorch model to OpenVINO's PyTorch frontend (the module, TorchScript
or torch.export program in memory); "onnx" exports it to ONNX first and converts that; "auto"
tries direct and falls back to ONNX, saying why. An ONNX upload has one route: OpenVINO's ONNX
frontend reads it. A module (state_dict) is traced here with torch.jit.trace as OpenVINO would, less
check_trace (which re-traces and re-runs the model, and costs more than the conversion): the
equivalence check below covers what it would catch. ONNX export: the TorchScript-based exporter
for opsets below 18 (it writes the opset asked for) and for TorchScript; the torch.export-based one
for opset 18 and later and for .pt2 programs; each falls back to the other where it can.

Shapes: "static" [1,3,H,W], "dynamic_batch" [?,3,H,W], "dynamic" [?,3,?,?] with H,W = input_size.
Precision: "fp32" keeps FP32 weights; "fp16" stores them FP16-compressed (OpenVINO decompresses
them at run time).

Preprocessing (optional) is embedded in the IR with OpenVINO's PrePostProcessor: the IR then takes
u8 images (NHWC by default, RGB or BGR) of any height and width, and resizes (by the model's
method), converts colour, subtracts mean and divides by std itself. The crop is not embedded: who
feeds the IR cuts the picture out by the model's rule (`workers/pipeline/preprocessing.py`), as
evaluation and classify.py do. Keys of `ConvertConfig.preprocessing`:
    layout      "NHWC" (default) | "NCHW"       of the u8 image tensor the IR takes
    color       "RGB" (default) | "BGR"          channel order of those images
    model_color "RGB" | "BGR"                    what the network wants; default: the ONNX
                                                 metadata's Image.BitmapPixelFormat, else RGB
    mean, std   3 numbers each, in value_range's units (default: ImageNet's, 0–1 units as
                torchvision writes them), in the network's channel order
    value_range "0-1" (default: pixels ÷ 255 first) | "0-255"
    resize      "bilinear" (default) | "bicubic" | "nearest"
    input_size  [H, W] the network sees (default: ConvertConfig.input_size)

Equivalence: after saving, the IR is read back and compiled on CPU with FP32 inference precision
(a CPU with bf16 support would otherwise run FP32 models in bf16), and it and the source run on
`samples` inputs — images of a dataset when given, else seeded random ones — at every shape the
choice allows (dynamic shapes: two batch sizes, and for "dynamic" two spatial sizes). The
source is the PyTorch module already in memory (also for the ONNX route), or for an ONNX upload
onnxruntime's run of the .onnx (another engine than the one that made the IR; a fixed input size
other than the one asked for is rewritten in memory, as OpenVINO is told it). With embedded
preprocessing the IR gets u8 images and the source gets the same images preprocessed here (the
same resize, half-pixel centres, no antialiasing); without it, dataset images are resized to the input
size and normalised with ImageNet's mean and std, the same tensor for both. Default tolerance: max
|difference| 1e-4 for FP32, 1e-2 for FP16 weights. Beyond it the result says so and a warning is
logged; it is no error. The PyTorch source runs on the check's inputs in a thread of its own while
its trace converts, so the check costs little more than compiling and running the IR.

Four inputs by default: a conversion that gets an operator wrong shows on any input, so more
random ones find little more, while each costs a run of the source and of the IR (together about
as much as the conversion itself for resnet18 at 8 inputs). Top-1 agreement on a dataset means
more with more images: the job's `samples` asks for up to 256.
"""

from workers.pipeline.conversion.config import ConversionResult, ConvertConfig, Equivalence
from workers.pipeline.conversion.job import convert

__all__ = ["ConversionResult", "ConvertConfig", "Equivalence", "convert"]
