#!/usr/bin/env python3
"""A synthetic referral history for bench/referrals.sh: N referrals (ServiceRequest + Task, with
the due dates and milestones the server keeps) over the last year, from 40 community practices
to 60 services of the two members, for N/5 patients — as NDJSON for `continuum import`.

    bench/referrals.py N OUT.ndjson [SEED]
"""
import json, random, sys, time

n = int(sys.argv[1]); out = open(sys.argv[2], "w"); rnd = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
DAY = 86_400_000
now = int(time.time() * 1000)
def instant(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
def w(r):
    out.write(json.dumps(r, separators=(",", ":")) + "\n")
DUE = "http://continuum-alliance.org/fhir/StructureDefinition/referral-due"
MILESTONE = "http://continuum-alliance.org/fhir/StructureDefinition/referral-milestone"
BSER = "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS"
for org in ["cc", "hhc"] + [f"practice-{i}" for i in range(40)]:
    w({"resourceType": "Organization", "id": org, "name": org})
services = [(f"svc-{i}", "cc" if i < 40 else "hhc") for i in range(60)]
for sid, org in services:
    w({"resourceType": "HealthcareService", "id": sid, "name": f"Service {sid}", "providedBy": {"reference": f"Organization/{org}"}})
patients = max(1, n // 5)
for p in range(patients):
    w({"resourceType": "Patient", "id": f"p{p}", "name": [{"family": f"F{p}", "given": ["G"]}], "birthDate": f"{2008 + p % 17}-0{1 + p % 9}-1{p % 10}",
       "managingOrganization": {"reference": f"Organization/practice-{p % 40}"}})
def ext(url, code, key, ms):
    return {"url": url, "extension": [{"url": "milestone", "valueCode": code}, {"url": key, "valueInstant": instant(ms)}]}
for k in range(n):
    authored = now - rnd.randrange(365 * DAY)
    sid, org = services[rnd.randrange(len(services))]
    patient = f"p{rnd.randrange(patients)}"
    practice = f"practice-{int(patient[1:]) % 40}"
    steps = []
    status, business = "requested", ("2.0", "Service Request Created")
    t = authored
    fate = rnd.random()
    closed = None
    if fate < 0.08 and t + 2 * DAY < now:
        status, business, closed = "rejected", ("4.0", "Service Request Declined"), t + 2 * DAY
    elif fate < 0.9:
        for m, gap in (("accepted", 2), ("booked", 8), ("seen", 12), ("reported", 4)):
            t += rnd.randrange(1, 2 * gap + 1) * DAY
            if t > now:
                break
            steps.append((m, t))
        done = {m for m, _ in steps}
        if "reported" in done:
            status, business, closed = "completed", ("7.0", "Service Request Fulfillment Completed"), t
        elif "seen" in done:
            status, business = "in-progress", ("5.1.4", "Service Request Event Completed")
        elif "booked" in done:
            status, business = "in-progress", ("5.1.1", "Service Request Event Scheduled")
        elif "accepted" in done:
            status, business = "accepted", ("3.0", "Service Request Accepted")
    if closed:
        steps.append(("closed", closed))
    exts = [ext(DUE, "accepted", "by", authored + 3 * DAY), ext(DUE, "booked", "by", authored + 18 * DAY), ext(DUE, "seen", "by", authored + 40 * DAY)]
    exts += [ext(MILESTONE, m, "at", at) for m, at in steps]
    w({"resourceType": "ServiceRequest", "id": f"sr{k}", "status": "active", "intent": "order", "subject": {"reference": f"Patient/{patient}"},
       "requester": {"reference": f"Organization/{practice}"}})
    task = {"resourceType": "Task", "id": f"t{k}", "status": status, "intent": "order", "priority": "routine",
            "focus": {"reference": f"ServiceRequest/sr{k}"}, "for": {"reference": f"Patient/{patient}"},
            "requester": {"reference": f"Organization/{practice}"}, "owner": {"reference": f"HealthcareService/{sid}"},
            "authoredOn": instant(authored), "businessStatus": {"coding": [{"system": BSER, "code": business[0], "display": business[1]}]},
            "extension": exts}
    if status == "rejected":
        task["statusReason"] = {"text": "not offered here"}
    w(task)
