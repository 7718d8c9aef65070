"""Nothing may phone home. OpenVINO's tools and NNCF send usage telemetry unless the user's
consent file says no; we write that "no" with the telemetry library's own API (the same file
`opt_in_out --opt_out` writes, without the opt-out event that command sends)."""

import logging
import os

log = logging.getLogger(__name__)


def telemetry_opt_out() -> bool:
    """Record the decline; True when telemetry is off for this user afterwards."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # no telemetry library, nothing can be sent
        return True
    checker = OptInChecker()
    if checker.check(enable_opt_in_dialog=False) != ConsentCheckResult.DECLINED:
        if not (checker.create_or_check_consent_dir() and checker.update_result(ConsentCheckResult.DECLINED)):
            log.warning("Could not record the OpenVINO telemetry opt-out in %s", checker.consent_file())
    return checker.check(enable_opt_in_dialog=False) == ConsentCheckResult.DECLINED


def hub_offline() -> None:
    """Hugging Face libraries neither download nor report: models come only from uploads."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
