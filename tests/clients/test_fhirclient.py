"""SMART's Python client (fhirclient, with its strict R4 models) against a running Continuum:
create, read, search with _include, _sort and paging through next links."""

import os
import uuid

import pytest
from fhirclient import client
from fhirclient.models.bundle import Bundle
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.models.fhirsearch import FHIRSearch

from test_fhirpy import URL, access_token


@pytest.fixture(scope="module")
def smart():
    c = client.FHIRClient(settings={"app_id": "continuum-tests", "api_base": URL + "/"})
    c.server.session.headers["Authorization"] = f"Bearer {access_token()}"
    return c


def test_create_read_and_models_parse(smart):
    p = Patient({"name": [{"family": f"Client{uuid.uuid4().hex[:6]}", "given": ["Rosa"]}], "birthDate": "2014-02-11", "gender": "female"})
    created = p.create(smart.server)
    pid = created["id"]
    read = Patient.read(pid, smart.server)
    assert read.birthDate.isostring == "2014-02-11"
    assert read.meta.versionId == "1"


def test_search_include_sort_and_paging(smart):
    tag = uuid.uuid4().hex[:8]
    ids = []
    for i, born in enumerate(["2012-01-01", "2008-05-05", "2015-09-09"] * 5):
        p = Patient({"name": [{"family": f"Sort{tag}", "given": [f"N{i}"]}], "birthDate": born})
        ids.append(p.create(smart.server)["id"])
    Observation({"status": "final", "code": {"text": "height"}, "subject": {"reference": f"Patient/{ids[0]}"}}).create(smart.server)

    # sorted by birth date, followed through next links
    search = FHIRSearch(Patient, {"family": f"Sort{tag}", "_sort": "birthdate", "_count": "4"})
    births = [r.birthDate.isostring for r in search.perform_resources_iter(smart.server)]
    assert len(births) == 15
    assert births == sorted(births)

    # _include brings the referenced patient along
    bundle = Bundle(smart.server.request_json(f"Observation?subject=Patient/{ids[0]}&_include=Observation:subject"))
    modes = sorted(e.search.mode for e in bundle.entry)
    assert modes == ["include", "match"]
