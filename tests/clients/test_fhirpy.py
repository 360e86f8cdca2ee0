"""A real FHIR client against a running Continuum: fhirpy creates, reads, updates, searches
with paging (fetch_all), counts and deletes. scripts/test starts the server and sets
CONTINUUM_FHIR_URL; run it by hand with `pytest tests/clients` against any Continuum."""

import base64
import json
import os
import urllib.parse
import urllib.request
import uuid

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

URL = os.environ["CONTINUUM_FHIR_URL"]


def access_token():
    """OAuth2 client credentials at /auth/token, as any backend service would do it."""
    basic = base64.b64encode(f"{os.environ['CONTINUUM_CLIENT_ID']}:{os.environ['CONTINUUM_CLIENT_SECRET']}".encode()).decode()
    req = urllib.request.Request(
        URL.removesuffix("/fhir") + "/auth/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
        headers={"Authorization": f"Basic {basic}"},
    )
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)["access_token"]


@pytest.fixture(scope="session")
def token():
    return access_token()


@pytest.fixture
def client(token):
    return SyncFHIRClient(URL, authorization=f"Bearer {token}")


def test_no_token_no_data():
    anonymous = SyncFHIRClient(URL)
    with pytest.raises(Exception):
        anonymous.resources("Patient").fetch()


def test_create_read_update_delete(client):
    family = f"Fhirpy{uuid.uuid4().hex[:8]}"
    patient = client.resource(
        "Patient",
        name=[{"family": family, "given": ["Lena"]}],
        birthDate="2011-09-14",
        address=[{"city": "Norwich", "postalCode": "06360", "state": "CT"}],
    )
    patient.save()
    assert patient.id
    assert patient["meta"]["versionId"] == "1"

    fetched = client.reference("Patient", patient.id).to_resource()
    assert fetched["name"][0]["family"] == family
    assert fetched["birthDate"] == "2011-09-14"

    fetched["active"] = True
    fetched.save()
    assert fetched["meta"]["versionId"] == "2"
    again = client.reference("Patient", patient.id).to_resource()
    assert again["active"] is True

    again.delete()
    with pytest.raises(Exception):
        client.reference("Patient", patient.id).to_resource()


def test_search_paging_and_count(client):
    tag = uuid.uuid4().hex[:10]
    for i in range(27):
        client.resource(
            "Patient",
            name=[{"family": f"Page{tag}", "given": [f"N{i}"]}],
            identifier=[{"system": "urn:fhirpy-test", "value": f"{tag}-{i}"}],
        ).save()
    search = client.resources("Patient").search(family=f"Page{tag}").limit(10)
    everything = search.fetch_all()
    assert len(everything) == 27
    assert len({p.id for p in everything}) == 27
    assert client.resources("Patient").search(family=f"Page{tag}").count() == 27
    one = client.resources("Patient").search(identifier=f"urn:fhirpy-test|{tag}-5").first()
    assert one["name"][0]["given"] == ["N5"]


def test_sort_include_and_count(client):
    tag = uuid.uuid4().hex[:10]
    births = ["2011-03-03", "2009-01-01", "2013-07-07", "2010-10-10"]
    patients = []
    for b in births:
        p = client.resource("Patient", name=[{"family": f"Ord{tag}"}], birthDate=b)
        p.save()
        patients.append(p)
    ordered = client.resources("Patient").search(family=f"Ord{tag}").sort("-birthdate").limit(3).fetch_all()
    assert [p["birthDate"] for p in ordered] == sorted(births, reverse=True)
    obs = client.resource("Observation", status="final", code={"text": "bmi"}, subject=patients[0].to_reference())
    obs.save()
    found = client.resources("Observation").search(subject=patients[0].id).include("Observation", "subject").fetch_raw()
    assert sorted(e["search"]["mode"] for e in found["entry"]) == ["include", "match"]
    assert client.resources("Patient").search(family=f"Ord{tag}").count() == 4


def test_invalid_resource_is_refused(client):
    bad = client.resource("Patient", birthDate="2011-02-30")
    with pytest.raises(OperationOutcome) as err:
        bad.save()
    assert "birthDate" in str(err.value)


def test_missing_resource(client):
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", "no-such-patient").to_resource()
