"""Pseudonymisation: keyed pseudonyms, birth date generalisation, UID remapping, and the PS3.15 decisions.

``Pseudonymiser`` holds the site secret and turns values into pseudonyms; every push path (DICOM
now, clinical records later) uses the same one, so the same patient lands on the same Patient.
``AttributePolicy`` applies the DICOM PS3.15 Basic Profile decisions kept as data in
``data/deidentification.tsv`` to the attributes read from a DICOM header.
"""

from fhir_bridge.privacy.profile import AttributePolicy, Rule, load_rules
from fhir_bridge.privacy.pseudonymiser import Pseudonymiser

__all__ = ["AttributePolicy", "Pseudonymiser", "Rule", "load_rules"]
