#!/usr/bin/env python3
"""The newborn day (issue 14): Patient creates that all share one birth date and placeholder
given names ("Baby Boy"/"Baby Girl", distinct family names, one town), first from one client,
then from 32 at once, while a reader asks for another Patient every 10 ms. Prints one JSON line
per phase: the create rate over the first and the last 250 creates, their ratio, and the
reader's latency percentiles.
Usage: newborn.py PORT TOKEN [--creates 2000]"""
import http.client, json, statistics, sys, threading, time

port, token = int(sys.argv[1]), sys.argv[2]
creates = int(sys.argv[sys.argv.index("--creates") + 1]) if "--creates" in sys.argv else 2000
HEADERS = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
SYL = ["ka", "lo", "mi", "ra", "ne", "to", "vi", "su", "de", "po", "li", "ba", "ge", "hu", "zo", "fi"]


def family(n):
    # distinct made-up family names: n in base 16, as syllables
    s, n = "", n + 16 * 16
    while n:
        s, n = SYL[n % 16] + s, n // 16
    return s.capitalize()


def newborn(n):
    return {"resourceType": "Patient",
            "identifier": [{"system": "urn:mrn:cc", "value": f"NB{n:06d}"}],
            "name": [{"family": family(n), "given": ["Baby", "Boy" if n % 2 else "Girl"]}],
            "gender": "male" if n % 2 else "female", "birthDate": "2026-11-30",
            "address": [{"use": "home", "city": "Hartford", "state": "CT", "postalCode": "06106"}],
            "managingOrganization": {"reference": "Organization/cc"}}


def creator(numbers, done, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for n in numbers:
        conn.request("POST", "/fhir/Patient", json.dumps(newborn(n)), HEADERS)
        r = conn.getresponse()
        r.read()
        if r.status != 201:
            errors.append(r.status)
        done.append(time.perf_counter())


def reader(stop, latencies):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.is_set():
        t = time.perf_counter()
        conn.request("GET", "/fhir/Patient/demo-pat-1", headers=HEADERS)
        r = conn.getresponse()
        r.read()
        latencies.append((time.perf_counter() - t) * 1000)
        time.sleep(0.01)


def phase(name, clients, first):
    done, errors, latencies = [], [], []
    stop = threading.Event()
    rd = threading.Thread(target=reader, args=(stop, latencies))
    rd.start()
    start = time.perf_counter()
    numbers = list(range(first, first + creates))
    threads = [threading.Thread(target=creator, args=(numbers[i::clients], done, errors)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    rd.join()
    done.sort()
    stamps = [start] + done

    def rate(a, b):  # creates completed between the a-th and the b-th
        return (b - a) / (stamps[b] - stamps[a])

    head, tail = rate(0, 250), rate(len(done) - 250, len(done))
    q = statistics.quantiles(latencies, n=100)
    print(json.dumps({"phase": name, "clients": clients, "creates": len(done), "errors": len(errors),
                      "seconds": round(done[-1] - start, 2), "first_250_per_s": round(head, 1),
                      "last_250_per_s": round(tail, 1), "ratio": round(tail / head, 3),
                      "reads": len(latencies), "read_p50_ms": round(q[49], 2), "read_p99_ms": round(q[98], 2)}),
          flush=True)


phase("one client", 1, 0)
phase("32 clients", 32, creates)
