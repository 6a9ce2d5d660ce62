"""The registry's contract: unique documented detectors, thresholds checked, a causal order for all. No TensorFlow."""


import pytest

from stalldoc.detectors import REGISTRY, by_id
from stalldoc.detectors.gradients import VanishingGradient


def ids(findings):
    return [f.id for f in findings]


# --- the registry -----------------------------------------------------------------------

def test_registry_ids_are_unique_kebab_case():
    registry_ids = [cls.id for cls in REGISTRY]
    assert len(registry_ids) == len(set(registry_ids))
    for i in registry_ids:
        assert i == i.lower() and " " not in i and "_" not in i


@pytest.mark.parametrize("cls", REGISTRY, ids=lambda c: c.id)
def test_every_detector_documents_itself(cls):
    for section in ("What it detects", "Why it stalls training", "How to fix", "Thresholds"):
        assert cls.doc_section(section), f"{cls.id} lacks '{section}'"
    for t in cls.thresholds:
        assert t.name in cls.doc_section("Thresholds"), f"{cls.id} does not document {t.name}"
    for other in cls.explains:
        by_id(other)  # every id it claims to explain exists


def test_unknown_threshold_and_bad_value_are_rejected():
    with pytest.raises(ValueError, match="unknown threshold"):
        VanishingGradient(min_grad=1)
    with pytest.raises(ValueError, match="must be a number"):
        VanishingGradient(min_grad_rms="small")


def test_causal_order_places_every_detector_once():
    from stalldoc.detectors import CAUSAL_ORDER

    placed = [i for peers in CAUSAL_ORDER for i in peers]
    assert len(placed) == len(set(placed))
    assert set(placed) == {cls.id for cls in REGISTRY}


def test_causal_order_decides_between_equal_findings():
    from stalldoc.detectors import causal_position

    assert causal_position("non-finite-data") == 0
    assert causal_position("unnormalized-input") == causal_position("unnormalized-target")  # peers
    assert causal_position("inverted-loss") < causal_position("saturated-activation") < causal_position(
        "vanishing-gradient")
    assert causal_position("not-a-detector") > causal_position("disconnected-gradient")  # unknown ids last


@pytest.mark.parametrize("cls", REGISTRY, ids=lambda c: c.id)
def test_every_detector_lives_in_the_module_of_its_area(cls):
    from stalldoc.detectors.base import AREAS

    assert cls.area in AREAS
    assert cls.__module__ == f"stalldoc.detectors.{cls.area}"


def test_every_attribute_read_elsewhere_is_declared_on_the_base():
    from stalldoc.detectors.base import Detector

    for name in ("id", "area", "summary", "severity", "thresholds", "explains", "caveat", "invalidates_loss"):
        assert name in Detector.__annotations__
