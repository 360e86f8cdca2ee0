"""Counts the booked Appointments of each Slot on a running server, page by page.

Usage: TOKEN=… python3 booked_per_slot.py PORT > booked.json   ({"Slot/id": count, …})
"""
import json
import os
import sys
import urllib.request

port, token = sys.argv[1], os.environ["TOKEN"]
booked = {}
url = f"http://127.0.0.1:{port}/fhir/Appointment?status=booked&_count=1000"
while url:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    b = json.load(urllib.request.urlopen(req))
    for e in b.get("entry", []):
        for s in e["resource"].get("slot", []):
            booked[s["reference"]] = booked.get(s["reference"], 0) + 1
    url = next((l["url"] for l in b.get("link", []) if l["relation"] == "next"), None)
json.dump(booked, sys.stdout)
