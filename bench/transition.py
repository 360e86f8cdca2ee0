#!/usr/bin/env python3
"""Synthetic young people for the transition scheduler's benchmark (issue 20): N Patients
born so that, on AS_OF, they are 12 to 26 (evenly spread), managed by one of four
organisations, and for a share of them the elements a real programme would have recorded —
the policy for 60% of those past 14, a readiness assessment for 40% of those past 15, the plan
of care and medical summary for 30% of those past 17, the transfer package for 20% of those
past 19 — as completed Tasks coded with the element. Deterministic (seeded).
Usage: bench/transition.py N AS_OF OUT.ndjson"""
import datetime
import json
import random
import sys

SYSTEM = "http://continuum-alliance.org/fhir/CodeSystem/transition-element"
ORGS = ["cc", "hhc", "shoreline-peds", "valley-peds"]
FAMILY = ("Abbott Baker Castillo Dimitrov Eriksen Fontaine Garcia Haddad Ivanova Jensen Kowalski "
          "Lindqvist Moreau Nakamura Okafor Petrov Quintero Rossi Santos Tanaka Usman Varga Weber "
          "Xu Yilmaz Zimmerman Brennan Carvalho Delgado Esposito Ferreira Gallagher Horvat").split()
GIVEN = ("Ava Liam Mia Noah Zoe Ethan Lily Mason Chloe Lucas Aria Owen Ella Caleb Nora Eli Maya "
         "Leo Ivy Miles Ruby Jack Hazel Theo Iris Felix Jade Oscar Luna Hugo Esme Ezra").split()


def main():
    n, as_of, out = int(sys.argv[1]), datetime.date.fromisoformat(sys.argv[2]), sys.argv[3]
    rnd = random.Random(20)
    with open(out, "w") as f:
        for org in ORGS:
            f.write(json.dumps({"resourceType": "Organization", "id": org, "name": org}) + "\n")
        for i in range(n):
            age_days = rnd.randint(12 * 365 + 4, 27 * 365 - 4)
            birth = as_of - datetime.timedelta(days=age_days)
            age = age_days / 365.25
            pid = f"y{i}"
            f.write(json.dumps({
                "resourceType": "Patient", "id": pid, "birthDate": birth.isoformat(),
                "name": [{"family": rnd.choice(FAMILY), "given": [rnd.choice(GIVEN)]}],
                "managingOrganization": {"reference": f"Organization/{ORGS[i % 4]}"},
            }) + "\n")
            done = []
            if age > 14 and rnd.random() < 0.6:
                done.append(("policy", 13))
            if age > 15 and rnd.random() < 0.4:
                done.append(("readiness", age - 0.5))
            if age > 17 and rnd.random() < 0.3:
                done += [("plan-of-care", 16.5), ("medical-summary", 16.5)]
            if age > 19 and rnd.random() < 0.2:
                done.append(("transfer-package", 18.5))
            for k, (element, at_age) in enumerate(done):
                on = birth + datetime.timedelta(days=int(at_age * 365.25))
                f.write(json.dumps({
                    "resourceType": "Task", "id": f"{pid}-{k}", "status": "completed",
                    "intent": "plan", "for": {"reference": f"Patient/{pid}"},
                    "code": {"coding": [{"system": SYSTEM, "code": element}]},
                    "executionPeriod": {"end": on.isoformat() + "T10:00:00Z"},
                }) + "\n")


if __name__ == "__main__":
    main()
