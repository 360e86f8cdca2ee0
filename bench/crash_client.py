"""The crash test's clients: THREADS threads book the slots listed in SLOTS_FILE through
POST Appointment/$book, each thread walking the whole list (so each slot is wanted by every
thread), and append every booking the server confirmed (HTTP 200) to OUT as
"appointment_id slot_id", flushed at once; READERS threads read demo Patients meanwhile and
append every read the server answered (HTTP 200) to OUT.reads as the Patient's id — each of
those reads must have left its AuditEvent. A thread stops at its first connection error (the
server was killed) or at the end of its work.

Usage: python3 crash_client.py BASE_URL TOKEN SLOTS_FILE OUT [THREADS] [READERS]
"""

import http.client
import json
import random
import sys
import threading
import urllib.parse

base, token, slots_file, out_path = sys.argv[1:5]
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 64
readers = int(sys.argv[6]) if len(sys.argv) > 6 else 16
slots = [line.strip() for line in open(slots_file) if line.strip()]
url = urllib.parse.urlparse(base)
lock = threading.Lock()
out = open(out_path, "a", buffering=1)
reads_out = open(out_path + ".reads", "a", buffering=1)
counts = {"ok": 0, "conflict": 0, "other": 0, "cut": 0, "reads": 0}


def book(conn, slot):
    body = json.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "slot", "valueReference": {"reference": f"Slot/{slot}"}},
        {"name": "patient", "valueReference": {"reference": f"Patient/demo-pat-{random.randrange(2000)}"}}]})
    conn.request("POST", "/fhir/Appointment/$book", body=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def worker(n):
    order = slots[n % len(slots):] + slots[:n % len(slots)]
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    for slot in order:
        try:
            status, data = book(conn, slot)
        except (OSError, http.client.HTTPException):
            with lock:
                counts["cut"] += 1
            return
        with lock:
            if status == 200:
                appointment = json.loads(data)["entry"][0]["resource"]["id"]
                out.write(f"{appointment} {slot}\n")
                out.flush()
                counts["ok"] += 1
            elif status == 409:
                counts["conflict"] += 1
            else:
                counts["other"] += 1


def reader(n):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    for _ in range(100000):
        patient = f"demo-pat-{random.randrange(2000)}"
        try:
            conn.request("GET", f"/fhir/Patient/{patient}", headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            with lock:
                counts["cut"] += 1
            return
        if resp.status == 200:
            with lock:
                reads_out.write(patient + "\n")
                reads_out.flush()
                counts["reads"] += 1


pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
pool += [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
for t in pool:
    t.start()
for t in pool:
    t.join()
print(json.dumps(counts))
