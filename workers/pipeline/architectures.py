"""The torchvision classification architectures Vintner builds by name (state_dict uploads,
training). Constants only, so the web process can list them without importing torch."""

ARCHITECTURES: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "convnext_tiny",
)

# Training also offers a small CNN of Vintner's own, for tiny images (any input size from 8 px).
TRAINABLE: tuple[str, ...] = ARCHITECTURES + ("small_cnn",)

# Those torchvision publishes ImageNet weights for (the small CNN has none).
PRETRAINED: tuple[str, ...] = ARCHITECTURES

# Per architecture: AdamW's learning rate and weight decay, SGD's, the input size, and a batch size
# that fits a 16 GB GPU at that size with AMP.
DEFAULTS = {
    "resnet18": (1e-3, 0.05, 0.05, 1e-4, 224, 64),
    "resnet34": (1e-3, 0.05, 0.05, 1e-4, 224, 64),
    "resnet50": (1e-3, 0.05, 0.05, 1e-4, 224, 32),
    "mobilenet_v3_small": (2e-3, 0.01, 0.05, 4e-5, 224, 64),
    "mobilenet_v3_large": (2e-3, 0.01, 0.05, 4e-5, 224, 64),
    "efficientnet_b0": (1e-3, 0.01, 0.05, 1e-5, 224, 32),
    "convnext_tiny": (5e-4, 0.05, 0.01, 5e-5, 224, 32),
    "small_cnn": (3e-3, 5e-4, 0.05, 5e-4, 32, 64),
}
# Parameters without the classifier head (torchvision's counts less its 1000-class head): a trained
# state_dict is at least 4 bytes each, which the web side checks against the team's quota first.
BACKBONE_PARAMETERS = {
    "resnet18": 11_176_512,
    "resnet34": 21_284_672,
    "resnet50": 23_508_032,
    "mobilenet_v3_small": 1_517_856,
    "mobilenet_v3_large": 4_202_032,
    "efficientnet_b0": 4_007_548,
    "convnext_tiny": 27_820_128,
}
# Validation, evaluation and deployment crop: the short side resized to size / VAL_CROP, then the
# centre cut out (torchvision's reference evaluation).
VAL_CROP = 0.875

# Smallest input each architecture makes sense at: torchvision's nets downsample 32 times.
MIN_INPUT_SIZE = {**{arch: 32 for arch in ARCHITECTURES}, "small_cnn": 8}


def defaults_for(architecture: str, optimizer: str = "adamw") -> dict:
    """What an unset lr / weight_decay / input_size become, and a batch size worth starting at."""
    from workers.pipeline.reporting import JobError

    if architecture not in DEFAULTS:
        raise JobError(f"architecture is “{architecture}”; it is one of {', '.join(TRAINABLE)}.")
    adamw_lr, adamw_wd, sgd_lr, sgd_wd, size, batch = DEFAULTS[architecture]
    lr, wd = (sgd_lr, sgd_wd) if optimizer == "sgd" else (adamw_lr, adamw_wd)
    return {"lr": lr, "weight_decay": wd, "input_size": size, "batch_size": batch}
