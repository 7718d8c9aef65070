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
