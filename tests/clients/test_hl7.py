"""A real HL7 v2 peer against a running Continuum: the PyPI `hl7` package's `mllp_send`
command and its MLLPClient send ADT messages over MLLP, and the acknowledgements are parsed
back with the same library. scripts/test starts the server with `--mllp` and sets
CONTINUUM_MLLP_PORT; the patient, the family, the care team and the referral are made here
through FHIR."""

import base64
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid

import hl7
import pytest
from hl7.client import MLLPClient

URL = os.environ["CONTINUUM_FHIR_URL"]
MLLP_PORT = int(os.environ["CONTINUUM_MLLP_PORT"])
FACILITY = "http://continuum-alliance.org/fhir/NamingSystem/hl7-facility"
NOTIFICATION = "http://continuum-alliance.org/fhir/CodeSystem/notification"


def access_token():
    basic = base64.b64encode(
        f"{os.environ['CONTINUUM_CLIENT_ID']}:{os.environ['CONTINUUM_CLIENT_SECRET']}".encode()
    ).decode()
    req = urllib.request.Request(
        URL.removesuffix("/fhir") + "/auth/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
        headers={"Authorization": f"Basic {basic}"},
    )
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)["access_token"]


@pytest.fixture(scope="module")
def fhir():
    token = access_token()

    def call(method, path, body=None):
        req = urllib.request.Request(
            f"{URL}/{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
        )
        with urllib.request.urlopen(req) as resp:
            return json.load(resp)

    return call


@pytest.fixture(scope="module")
def teen(fhir):
    """A 15-year-old with a hospital record number, her mother, a care team and an open
    referral; the hospital registered under the facility name its messages carry."""
    tag = uuid.uuid4().hex[:6].upper()
    facility = f"HOSP{tag}"
    org = fhir("POST", "Organization", {"resourceType": "Organization", "name": f"Test Children's {tag}",
                                         "identifier": [{"system": FACILITY, "value": facility}]})
    practice = fhir("POST", "Organization", {"resourceType": "Organization", "name": f"Practice {tag}"})
    service = fhir("POST", "HealthcareService", {"resourceType": "HealthcareService", "name": "Cardiology",
                                                  "providedBy": {"reference": f"Organization/{org['id']}"}})
    patient = fhir("POST", "Patient", {
        "resourceType": "Patient", "name": [{"family": f"Hl7test{tag.lower()}", "given": ["Ada"]}],
        "gender": "female", "birthDate": "2011-05-20",
        "identifier": [{"system": f"urn:mrn:{facility.lower()}", "value": f"MRN-{tag}"}],
        "managingOrganization": {"reference": f"Organization/{practice['id']}"}})
    mother = fhir("POST", "RelatedPerson", {
        "resourceType": "RelatedPerson", "active": True, "patient": {"reference": f"Patient/{patient['id']}"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}]})
    fhir("POST", "CareTeam", {"resourceType": "CareTeam", "status": "active",
                              "subject": {"reference": f"Patient/{patient['id']}"},
                              "participant": [{"member": {"reference": f"RelatedPerson/{mother['id']}"}}]})
    sr = fhir("POST", "ServiceRequest", {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                                          "subject": {"reference": f"Patient/{patient['id']}"}})
    fhir("POST", "Task", {"resourceType": "Task", "status": "requested", "intent": "order", "priority": "routine",
                          "focus": {"reference": f"ServiceRequest/{sr['id']}"},
                          "for": {"reference": f"Patient/{patient['id']}"},
                          "requester": {"reference": f"Organization/{practice['id']}"},
                          "owner": {"reference": f"HealthcareService/{service['id']}"}})
    return {"facility": facility, "mrn": f"MRN-{tag}", "patient": patient["id"], "mother": mother["id"],
            "service": service["id"], "family": f"Hl7test{tag.lower()}"}


def adt(teen, event, control, visit, service="CARD"):
    end = "|||||||||||||||||01||||||||20261202080000|20261204093000" if event == "A03" else ""
    return "\r".join([
        f"MSH|^~\\&|EPIC|{teen['facility']}|CONTINUUM|ALLIANCE|20261202101500||ADT^{event}^ADT_A01|{control}|P|2.5.1",
        f"EVN|{event}|20261202101500",
        f"PID|1||{teen['mrn']}^^^{teen['facility']}^MR||{teen['family']}^Ada||20110520|F",
        f"PV1|1|I|4N^412^B||||1234^Ruiz^Ana^^^Dr|||{service}||||7|||||{visit}^^^{teen['facility']}^VN{end}",
    ]) + "\r"


def send(message):
    with MLLPClient("127.0.0.1", MLLP_PORT) as client:
        return hl7.parse(client.send_message(message).decode())


def msa(ack):
    return str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])


def encounters(fhir, teen, visit):
    b = fhir("GET", f"Encounter?identifier=urn:visit:{teen['facility'].lower()}|{visit}")
    return [e["resource"] for e in b.get("entry", [])]


def alerts(fhir, teen):
    b = fhir("GET", f"Communication?category={NOTIFICATION}|hospital-events&subject=Patient/{teen['patient']}&_count=100")
    return [e["resource"]["recipient"][0]["reference"] for e in b.get("entry", [])]


def test_mllp_send_admits_and_the_ack_is_aa(fhir, teen, tmp_path):
    path = tmp_path / "a01.hl7"
    path.write_text(adt(teen, "A01", "PY-1", "PV1").replace("\r", "\n"))
    out = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "mllp_send"), "--loose", "--port", str(MLLP_PORT),
         "--file", str(path), "127.0.0.1"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    ack = hl7.parse(out.strip().replace("\n", "\r"))
    assert msa(ack) == ("AA", "PY-1"), out
    assert len(encounters(fhir, teen, "PV1")) == 1


def test_update_and_discharge_make_one_encounter_and_the_owner_is_told(fhir, teen):
    for event, control in [("A01", "PY-2"), ("A08", "PY-3"), ("A03", "PY-4")]:
        ack = send(adt(teen, event, control, "PV2"))
        assert msa(ack) == ("AA", control), str(ack)
    found = encounters(fhir, teen, "PV2")
    assert len(found) == 1
    assert found[0]["status"] == "finished"
    told = alerts(fhir, teen)
    assert f"HealthcareService/{teen['service']}" in told
    # resent: AA again, nothing new
    before = len(told)
    assert msa(send(adt(teen, "A03", "PY-4", "PV2")))[0] == "AA"
    assert len(alerts(fhir, teen)) == before


def test_a_sensitive_admission_is_not_told_to_the_mother(fhir, teen):
    owner, mother = f"HealthcareService/{teen['service']}", f"RelatedPerson/{teen['mother']}"
    before = alerts(fhir, teen)
    ack = send(adt(teen, "A01", "PY-5", "PV3", service="PSY"))
    assert msa(ack)[0] == "AA", str(ack)
    after = alerts(fhir, teen)
    assert after.count(owner) == before.count(owner) + 1
    assert after.count(mother) == before.count(mother), "a parent is not told of minor-consented care"
    # an ordinary admission does reach her
    assert msa(send(adt(teen, "A01", "PY-8", "PV5")))[0] == "AA"
    assert alerts(fhir, teen).count(mother) == before.count(mother) + 1


def test_bad_messages_are_refused(teen):
    assert str(send("PID|1||X\r").segment("MSA")[1]) == "AR"
    unknown = (adt(teen, "A01", "PY-6", "PV4").replace(teen["mrn"], "NOBODY")
               .replace(f"{teen['family']}^Ada||20110520|F", "Nobody^Zed||19990101|M"))
    ack = send(unknown)
    assert msa(ack) == ("AE", "PY-6")
    assert str(ack.segment("ERR")[3]).startswith("204^"), str(ack)
    ack = send(adt(teen, "A01", "PY-7", "PV4").replace("ADT^A01^ADT_A01", "ADT^A99"))
    assert msa(ack) == ("AR", "PY-7")
