// The console's flows in a real browser: Debian's chromium driven by playwright-core, against
// a demo server started by scripts/test. Every page visited is checked with axe-core (no
// serious or critical violation), must log no browser error (a blocked script or style is
// one), and is screenshot at 1280 and 390 px widths into $SCREENSHOTS (git ignores target/).
//
//   CONTINUUM_URL=http://127.0.0.1:PORT CONTINUUM_DEMO_USERS=…/demo-users \
//   SCREENSHOTS=target/screenshots/sqlite FLOWS=all node tests/browser/console.js
//
// FLOWS: "all", or a comma-separated list of flow names (refer, family, identity, measures, site).
'use strict';
const fs = require('fs');
const path = require('path');
const assert = require('assert/strict');
const { chromium } = require('playwright-core');

const BASE = process.env.CONTINUUM_URL || 'http://127.0.0.1:8080';
const SHOTS = process.env.SCREENSHOTS || path.join(__dirname, '../../target/screenshots');
const FLOWS = (process.env.FLOWS || 'all').split(',');
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const USERS = Object.fromEntries(
  fs.readFileSync(process.env.CONTINUUM_DEMO_USERS, 'utf8').trim().split('\n')
    .map((l) => l.trim().split(/\s+/)).map(([name, password]) => [name, password]));

fs.mkdirSync(SHOTS, { recursive: true });
const results = [];

async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.errors = [];
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  return page;
}

async function signIn(page, user) {
  await page.goto(`${BASE}/login`);
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(USERS[user]);
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign in' }).click()]);
  assert.ok(!page.url().includes('/login'), `${user} is signed in (at ${page.url()})`);
}

// axe-core on the page, the browser's errors, and the two screenshots
async function check(page, name) {
  await page.evaluate(AXE);
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  const bad = found.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${name}: axe-core finds serious or critical violations`);
  assert.deepEqual(page.errors, [], `${name}: the browser logged errors`);
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 900 });
    await page.waitForTimeout(150);
    await page.screenshot({ path: path.join(SHOTS, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  results.push(name);
}

async function submit(page, locator) {
  await Promise.all([page.waitForNavigation(), locator.click()]);
}

// the line saying what was just done (or, failing the flow, the error the page shows)
async function flash(page) {
  const error = page.locator('.error[role=alert]');
  if (await error.count()) {
    throw new Error(`${page.url()} says: ${await error.first().textContent()}`);
  }
  return (await page.locator('.flash[role=status]').textContent({ timeout: 5000 })) || '';
}

const flows = {
  // a community pediatrician refers a child; the specialty coordinator accepts it, finds care
  // on the map and books a video slot; the referral shows "scheduled"
  async refer(browser) {
    const doc = await newPage(browser);
    await doc.goto(`${BASE}/login`);
    await check(doc, 'login');
    await signIn(doc, 'pediatrician');
    await doc.goto(`${BASE}/patients?q=Rivera`);
    await check(doc, 'patients');
    await submit(doc, doc.getByRole('link', { name: 'Mateo Rivera' }));
    await check(doc, 'patient');
    await doc.getByText('Refer Mateo Rivera').click();
    const service = doc.getByLabel('Service');
    const options = await service.locator('option').allTextContents();
    const cardiology = options.find((o) => /pediatric cardiology/i.test(o) && /Connecticut Children/.test(o));
    assert.ok(cardiology, `a cardiology service of Connecticut Children's is offered: ${options.join(' | ')}`);
    await service.selectOption({ label: cardiology });
    await doc.getByLabel('Priority').selectOption('urgent');
    await doc.getByLabel('Reason for referral').fill('New murmur at the 9-year check; please evaluate');
    await submit(doc, doc.getByRole('button', { name: 'Send the referral' }));
    assert.match(await flash(doc), /referral was sent/);
    assert.equal((await doc.locator('#referral-status').textContent()).trim(), 'Requested');
    const referral = doc.url().split('?')[0];
    await check(doc, 'referral-sent');

    const coord = await newPage(browser);
    await signIn(coord, 'coordinator');
    assert.ok(coord.url().endsWith('/worklist'), `a coordinator starts at the worklist: ${coord.url()}`);
    await coord.goto(`${BASE}/worklist?state=open`);
    await check(coord, 'worklist');
    const id = referral.split('/').pop();
    const row = coord.locator(`a[href="/referrals/${id}"]`);
    assert.equal(await row.count(), 1, 'the new referral is on the receiving worklist');
    await submit(coord, row);
    await submit(coord, coord.getByRole('button', { name: 'Accept', exact: true }));
    assert.match(await flash(coord), /accepted/);
    assert.equal((await coord.locator('#referral-status').textContent()).trim(), 'Accepted');
    await submit(coord, coord.getByRole('link', { name: 'Find care and book' }));
    assert.equal(await coord.getByLabel('Service needed').inputValue() !== '', true, 'the need comes from the referral');
    await coord.getByLabel('Visit').selectOption('video');
    await submit(coord, coord.getByRole('button', { name: 'Find care' }));
    await coord.locator('#map .leaflet-container, #map.leaflet-container').first().waitFor();
    await coord.locator('#map path.leaflet-interactive').first().waitFor();
    await check(coord, 'find-care');
    const book = coord.locator('article.option').first().getByRole('button', { name: /^Book / });
    await submit(coord, book);
    assert.match(await flash(coord), /appointment was booked/);
    assert.equal((await coord.locator('#referral-status').textContent()).trim(), 'In progress');
    assert.equal((await coord.locator('#referral-business').textContent()).trim(), 'scheduled');
    await check(coord, 'referral-scheduled');
    // the slot picker of an option
    await coord.goto(`${BASE}/find-care?patient=demo-mateo&service=pediatric+cardiology&modality=in-person`);
    await submit(coord, coord.getByRole('link', { name: 'Other times' }).first());
    assert.ok(await coord.locator('form[action="/book"] button').count() > 0, 'the picker offers times');
    await check(coord, 'slots');
    // an error, in words
    await coord.goto(`${BASE}/referrals/no-such-referral`);
    assert.match(await coord.locator('.error').textContent(), /no referral/);
    // (the page's own 404 is the one resource error expected here)
    coord.errors = coord.errors.filter((e) => !/status of 404/.test(e));
    await check(coord, 'error');
  },

  // a parent sees the appointment and its join button, not the 16-year-old's confidential
  // visit, accepts a waitlist offer and cancels an appointment
  async family(browser) {
    const mom = await newPage(browser);
    await signIn(mom, 'parent');
    assert.ok(mom.url().endsWith('/family'), `a parent starts at the family page: ${mom.url()}`);
    const text = await mom.locator('main').textContent();
    assert.match(text, /Nora Reyes/);
    assert.match(text, /heart murmur evaluation/, 'her normal visits are shown');
    assert.doesNotMatch(text, /Confidential adolescent health visit/, 'a 16-year-old\'s confidential care is hers');
    const join = mom.getByRole('link', { name: 'Join the video visit' });
    assert.equal(await join.count(), 1, 'the video visit can be joined now');
    assert.match(await join.getAttribute('href'), /\/visit\/[0-9a-f]{32}$/);
    await check(mom, 'family');
    // the confidential visit is not reachable by its address either
    const hidden = await mom.request.get(`${BASE}/fhir/Encounter/demo-nora-confidential`);
    assert.equal(hidden.status(), 404);
    // the offer
    assert.match(text, /An earlier time is offered/);
    await submit(mom, mom.getByRole('button', { name: /^Accept / }));
    assert.match(await flash(mom), /earlier time is yours/);
    assert.doesNotMatch(await mom.locator('main').textContent(), /An earlier time is offered/);
    await check(mom, 'family-offer-accepted');
    // cancel the (newly booked) visit
    const visits = mom.locator('ul.appointments > li');
    const before = await visits.count();
    const last = visits.nth(before - 1);
    await last.getByText('Cancel this appointment').click();
    await last.getByLabel('Reason (optional)').fill('We are away that week');
    await submit(mom, last.getByRole('button', { name: 'Cancel the appointment' }));
    assert.match(await flash(mom), /appointment was cancelled/);
    assert.equal(await mom.locator('ul.appointments > li').count(), before - 1);
    // a young person of 16 sees her own record, the confidential visit included
    const nora = await newPage(browser);
    await signIn(nora, 'nora');
    assert.match(await nora.locator('main').textContent(), /Confidential adolescent health visit/);
    await check(nora, 'family-young-person');
  },

  // transition to adult care: a coordinator finds who is due, records an element, and sends
  // Sam's transfer package with its referral; Nora (16) answers her readiness assessment
  // herself; her mother cannot answer it for her
  async transition(browser) {
    const coord = await newPage(browser);
    await signIn(coord, 'coordinator');
    await submit(coord, coord.getByRole('link', { name: 'Transition', exact: true }));
    await check(coord, 'transition-registry');
    await coord.getByLabel('Element').selectOption('policy');
    await coord.getByLabel('Age').selectOption('12-13');
    await submit(coord, coord.getByRole('button', { name: 'Show' }));
    const first = coord.locator('tbody tr').first().getByRole('link');
    const who = (await first.textContent()).trim();
    await submit(coord, first);
    await check(coord, 'transition-person');
    await coord.getByLabel('Element', { exact: true }).selectOption('policy');
    await submit(coord, coord.getByRole('button', { name: 'Record it as done today' }));
    assert.match(await flash(coord), /element was recorded/);
    const policy = coord.locator('tbody tr', { hasText: 'transition policy shared' });
    assert.match(await policy.textContent(), /done/, `${who}: the policy is recorded`);
    // a medical summary, written in the console, records its element
    await coord.getByLabel('What').selectOption('medical-summary');
    await coord.getByLabel('Text').fill('Type 1 diabetes since 8, insulin pump; no admissions this year.');
    await submit(coord, coord.getByRole('button', { name: 'Write it to the record' }));
    assert.match(await flash(coord), /written to the record/);
    assert.match(await coord.locator('tbody tr', { hasText: 'medical summary and emergency' }).textContent(), /done/);
    // Sam, 18 last week: every part on file; the package goes with the referral
    await coord.goto(`${BASE}/transition?state=due&age=18-21`);
    await submit(coord, coord.getByRole('link', { name: 'Sam Whitfield' }));
    assert.match(await coord.locator('#h-transfer + p').textContent(), /Every part is on file/);
    assert.match(await coord.getByLabel('Transfer letter').inputValue(), /Sam Whitfield \(born/);
    await check(coord, 'transition-transfer');
    const adult = coord.getByLabel('Adult clinician or service');
    const options = await adult.locator('option').allTextContents();
    const primary = options.find((o) => /Hartford HealthCare/.test(o));
    assert.ok(primary, `an adult service of Hartford HealthCare is offered: ${options.join(' | ')}`);
    await adult.selectOption({ label: primary });
    await submit(coord, coord.getByRole('button', { name: 'Send the transfer package with the referral' }));
    assert.match(await flash(coord), /transfer package was sent/);
    assert.match(await coord.locator('section[aria-labelledby="h-transfer"]').textContent(), /pediatric team stays responsible until the first visit/);
    await check(coord, 'transition-sent');
    // Nora answers her own assessment
    const nora = await newPage(browser);
    await signIn(nora, 'nora');
    await submit(nora, nora.getByRole('link', { name: 'Getting ready for adult care' }));
    await check(nora, 'readiness');
    const questions = nora.locator('fieldset.question');
    const n = await questions.count();
    assert.equal(n, 12, 'twelve questions');
    for (let i = 0; i < n; i += 1) {
      await questions.nth(i).getByLabel(i % 3 === 0 ? "I'm learning" : 'Yes, on my own').check();
    }
    await submit(nora, nora.getByRole('button', { name: /^Save my answers/ }));
    assert.match(await flash(nora), /answers were saved/);
    assert.match(await nora.locator('main').textContent(), /Last answered on/);
    // her mother cannot answer it for a 16-year-old
    const mom = await newPage(browser);
    await signIn(mom, 'parent');
    await submit(mom, mom.getByRole('link', { name: 'Getting ready for adult care' }));
    const card = mom.locator('section.card', { hasText: 'Nora Reyes' });
    assert.match(await card.textContent(), /own to answer: a parent cannot fill it in/);
    assert.equal(await card.locator('form').count(), 0, 'no form for the parent');
    await check(mom, 'readiness-parent');
  },

  // a coordinator resolves an identity pair (twins: two people)
  async identity(browser) {
    const coord = await newPage(browser);
    await signIn(coord, 'coordinator');
    await coord.goto(`${BASE}/identity`);
    const pairs = coord.locator('section.card[aria-labelledby^="pair-"]');
    const n = await pairs.count();
    assert.ok(n > 0, 'pairs wait for review');
    await check(coord, 'identity');
    // the demo's pairs are twins: same birth date and home, different first names
    const first = pairs.first();
    assert.match(await first.locator('tr.differ').first().textContent(), /Name/);
    await submit(coord, first.getByRole('button', { name: 'Different people' }));
    assert.match(await flash(coord), /two different people/);
    assert.equal(await coord.locator('section.card[aria-labelledby^="pair-"]').count(), n - 1);
    await coord.goto(`${BASE}/identity?state=rejected`);
    assert.equal(await coord.locator('section.card[aria-labelledby^="pair-"]').count(), 1);
  },

  // the dashboards: the coordinator's organisation by month, charts with data and a table
  // under each; the CSV downloads; the administrator sees the whole alliance and filters
  async measures(browser) {
    const coord = await newPage(browser);
    await signIn(coord, 'coordinator');
    await coord.goto(`${BASE}/measures`);
    const volume = coord.locator('#m-referral-volume');
    assert.equal(await volume.locator('svg.chart').count(), 1, 'the referral volume is charted');
    assert.ok(await volume.locator('svg.chart circle').count() >= 3, 'months with referrals are points');
    assert.ok(await volume.locator('tbody tr').count() >= 3, 'and rows of the table under it');
    assert.match(await coord.locator('#m-loop-closure').textContent(), /CMS50/);
    assert.ok(await coord.locator('section.measure svg.chart').count() >= 5, 'most measures have a chart');
    await check(coord, 'measures');
    const [download] = await Promise.all([
      coord.waitForEvent('download'),
      coord.getByRole('link', { name: 'Download the figures (CSV)' }).click(),
    ]);
    const file = await download.path();
    const csv = fs.readFileSync(file, 'utf8').split('\n');
    assert.equal(csv[0], 'month,organization,service,age_band,measure,detail,value,numerator,denominator,n,suppressed');
    assert.ok(csv.some((l) => l.includes(',referral-volume,')), 'the CSV holds the referral volume');
    const admin = await newPage(browser);
    await signIn(admin, 'demo-admin');
    await admin.goto(`${BASE}/measures`);
    assert.equal(await admin.getByLabel('Organisation').inputValue(), '', 'the whole alliance');
    await admin.getByLabel('Age').selectOption('5-11');
    await submit(admin, admin.getByRole('button', { name: 'Show' }));
    assert.ok(admin.url().includes('age=5-11'));
    await check(admin, 'measures-admin');
  },

  // an administrator adds a clinic site
  async site(browser) {
    const admin = await newPage(browser);
    await signIn(admin, 'demo-admin');
    await admin.goto(`${BASE}/admin`);
    await check(admin, 'admin');
    const name = `Mystic Pediatric Clinic ${Date.now() % 100000}`;
    await admin.getByLabel('Site name').fill(name);
    await admin.getByLabel('Organisation', { exact: true }).selectOption('cc');
    await admin.getByLabel('Street address').fill('5 Holmes Street');
    await admin.getByLabel('ZIP code').fill('06355');
    await submit(admin, admin.getByRole('button', { name: 'Add the site' }));
    assert.match(await flash(admin), /site was added/);
    const row = admin.locator('table tr', { hasText: name });
    assert.equal(await row.count(), 1);
    assert.match(await row.textContent(), /06355/);
    // a ZIP code the directory does not know is refused in words
    await admin.getByLabel('Site name').fill('Nowhere clinic');
    await admin.getByLabel('Street address').fill('1 Nowhere Road');
    await admin.getByLabel('ZIP code').fill('00000');
    await submit(admin, admin.getByRole('button', { name: 'Add the site' }));
    assert.match(await admin.locator('.error').textContent(), /not a ZIP code/);
  },
};

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking'],
  });
  let failed = 0;
  try {
    for (const [name, flow] of Object.entries(flows)) {
      if (!FLOWS.includes('all') && !FLOWS.includes(name)) { continue; }
      const t0 = Date.now();
      try {
        await flow(browser);
        console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      } catch (e) {
        failed += 1;
        console.log(`FAIL ${name}: ${e.stack || e}`);
      }
    }
  } finally {
    await browser.close();
  }
  console.log(`${results.length} pages checked with axe-core and screenshot at 1280 and 390 px into ${SHOTS}`);
  process.exit(failed ? 1 : 0);
})();
