"""``fhir-bridge patient erase``: erase one patient's data for good (GDPR), by id, pseudonym or identifier."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from fhir_bridge.audit.log import AuditEntry, now_us
from fhir_bridge.cli.common import EXIT_CONFIGURATION, add_database, add_key_file, refuse, services_from
from fhir_bridge.errors import ConfigurationError, FhirError

EXIT_NOT_FOUND = 1


def erase(arguments: argparse.Namespace) -> int:
    with services_from(arguments) as services:
        try:
            erasure = services.erasure
            if arguments.identifier:
                system, _, value = arguments.identifier.rpartition("|")
                if services.settings.pseudonymise:
                    if services.pseudonymiser is None or not system:
                        print("fhir-bridge: --identifier needs SYSTEM|VALUE and the site key", file=sys.stderr)
                        return EXIT_CONFIGURATION
                    ids = erasure.patients_with_identifier(services.pseudonymiser.patient_identifier(system, value))
                else:
                    ids = erasure.patients_with_identifier(arguments.identifier)
            elif arguments.pseudonym:
                ids = erasure.patients_with_identifier(arguments.pseudonym)
            else:
                ids = [arguments.id]
            if not ids:
                print("fhir-bridge: no Patient has that identifier", file=sys.stderr)
                return EXIT_NOT_FOUND
            for patient_id in ids:
                report = erasure.erase_patient(patient_id)
                services.audit_log.record(
                    AuditEntry(
                        recorded=now_us(),
                        client_id=f"cli:{getpass.getuser()}"[:128],
                        interaction="delete",
                        action="D",
                        method="CLI",
                        path="fhir-bridge patient erase",
                        query=None,
                        entity=None,
                        entity_type="Patient",
                        status=200,
                        detail=report.summary(),
                        address=None,
                    )
                )
                print(report.summary())
        except ConfigurationError as error:
            return refuse(error)
        except FhirError as error:
            print(f"fhir-bridge: {error.diagnostics}", file=sys.stderr)
            return EXIT_NOT_FOUND
    return 0


def register(commands: Any) -> None:
    patient = commands.add_parser("patient", help="one patient's data: erase it for good (GDPR)")
    actions = patient.add_subparsers(dest="action", required=True)
    erasing = actions.add_parser(
        "erase", help="erase a Patient and its compartment: every version, index row and bulk export holding it"
    )
    which = erasing.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="the Patient's id")
    which.add_argument("--pseudonym", help="the Patient.identifier value stored (the pseudonym)")
    which.add_argument(
        "--identifier", help="SYSTEM|VALUE as the hospital knows it: pseudonymised with the site key, then looked up"
    )
    add_database(erasing)
    add_key_file(erasing)
    erasing.set_defaults(handler=erase)
