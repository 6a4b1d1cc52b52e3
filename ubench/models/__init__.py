"""Model zoo: one module per variant (see registry.py); shared blocks live in ops/."""

from ubench.models.registry import (  # noqa: F401
    FAMILIES,
    ModelInfo,
    create_model,
    is_model,
    list_models,
    model_info,
    model_source_file,
    register_model,
    unavailable_models,
    uses_selective_scan,
)
