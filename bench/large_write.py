"""The large-write bench (bench/large-write.sh): PORT TOKEN. Prints a Markdown table."""
import json, statistics, sys, threading, time, urllib.request

PORT, TOKEN = sys.argv[1], sys.argv[2]
BASE = f"http://127.0.0.1:{PORT}/fhir"


def post(path, body):
    data = json.dumps(body).encode()
    req = urllib.request.Request(f"{BASE}/{path}", data=data, method="POST", headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json", "Prefer": "return=minimal"})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.perf_counter() - t, len(data)


def large(kind, n, pad):
    text = lambda i: f"{i:06}" + "x" * pad
    if kind == "identifiers":
        return {"resourceType": "Patient", "identifier": [{"system": "urn:bench", "value": text(i)} for i in range(n)]}
    return {"resourceType": "Patient", "name": [{"family": text(i), "given": ["Ana"]} for i in range(n)]}


small = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}, "valueQuantity": {"value": 20, "unit": "kg"}}
print("| large write | size | status | its time | small writes meanwhile | small p50 | small max |")
print("|---|---|---|---|---|---|---|")
for kind, n, pad in [("identifiers", 10_000, 10), ("names", 10_000, 1000), ("identifiers", 100_000, 10)]:
    body = large(kind, n, pad)
    done = threading.Event()
    lat = []

    def smalls():
        while not done.is_set():
            s, t, _ = post("Observation", small)
            if s == 201:
                lat.append(t)

    th = threading.Thread(target=smalls)
    th.start()
    time.sleep(0.3)
    before = len(lat)
    status, t, size = post("Patient", body)
    during = lat[before:]
    done.set()
    th.join()
    p50 = statistics.median(during) * 1000 if during else float("nan")
    mx = max(during) * 1000 if during else float("nan")
    print(f"| {n:,} {kind} | {size / 1e6:.1f} MB | {status} | {t * 1000:.0f} ms | {len(during)} | {p50:.1f} ms | **{mx:.0f} ms** |")
