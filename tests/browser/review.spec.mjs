// The dashboard in a real browser: headless Chromium (Debian's
// /usr/bin/chromium) driven by playwright-core, with axe-core checking
// every page.  Started by tests/system/test_browser.py against a running
// rekeyd that holds one submission for review; a plain node script, no
// test runner.
//
// Environment: REKEY_URL (http://127.0.0.1:PORT), REKEY_TOKEN (a token of
// the token file), REKEY_JOB (the id of the held Antrag), REKEY_OUT (folder
// for the screenshots), CHROMIUM (default /usr/bin/chromium).
//
// Prints one line `RESULT {json}` at the end and exits 0 when every check
// passed, 1 otherwise (the failed checks are in the JSON and on stderr).
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const base = process.env.REKEY_URL;
const token = process.env.REKEY_TOKEN;
const jobId = process.env.REKEY_JOB;
const out = process.env.REKEY_OUT;
if (!base || !token || !jobId || !out) {
  console.error('REKEY_URL, REKEY_TOKEN, REKEY_JOB and REKEY_OUT are needed');
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const result = { ok: false, failures: [], axe: {}, screenshots: [], focus: {}, csp: [] };
function check(cond, what) {
  if (!cond) {
    result.failures.push(what);
    console.error('FAILED: ' + what);
  }
  return cond;
}

// axe-core on the page as it is now: counts by impact, and every serious
// or critical violation printed with its nodes.
async function axe(page, name) {
  const r = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    await axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
      resultTypes: ['violations'],
    }));
  const bad = r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical');
  result.axe[name] = {
    serious_or_critical: bad.length,
    all: r.violations.map(v => `${v.impact}: ${v.id}`),
  };
  for (const v of r.violations) {
    const nodes = v.nodes.slice(0, 5).map(n => n.target.join(' ')).join(' | ');
    console.error(`axe ${name}: ${v.impact} ${v.id}: ${v.help} [${nodes}]`);
  }
  check(bad.length === 0, `axe on ${name}: ${bad.length} serious or critical violation(s)`);
}

async function shot(page, file) {
  const p = path.join(out, file);
  await page.screenshot({ path: p, fullPage: true });
  result.screenshots.push(p);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-dev-shm-usage'],
});
try {
  const context = await browser.newContext({ locale: 'de-DE', viewport: { width: 1280, height: 900 } });
  // axe comes in through the DevTools protocol, which the page's
  // Content-Security-Policy (script-src 'self') does not govern
  await context.addInitScript({ content: axeSource });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('console', m => {
    if (/Content.Security.Policy|Refused to/i.test(m.text())) result.csp.push(m.text());
  });
  page.on('pageerror', e => result.failures.push('script error: ' + e.message));

  // 1. no session: the login page
  await page.goto(base + '/');
  check(new URL(page.url()).pathname === '/anmelden', 'without a session / goes to /anmelden');
  check(await page.getAttribute('html', 'lang') === 'de', 'lang="de"');
  await axe(page, 'login');

  // 2. log in with the keyboard only
  await page.focus('#token');
  await page.keyboard.type(token);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  check(new URL(page.url()).pathname === '/', 'after the login: the overview');
  check((await page.textContent('h1')).trim() === 'Übersicht', 'overview heading');
  await axe(page, 'overview');
  await shot(page, 'dashboard-overview.png');

  // 3. the queue, filtered to what waits for a clerk
  await Promise.all([page.waitForNavigation(), page.click('nav >> text=Zur Klärung')]);
  check(page.url().endsWith('/antraege?status=review'), 'queue filtered by state');
  await axe(page, 'queue');
  const link = page.locator(`table a[href="/antraege/${jobId}"]`);
  check(await link.count() === 1, `the held Antrag ${jobId} is in the queue`);
  await Promise.all([page.waitForNavigation(), link.click()]);
  check(new URL(page.url()).pathname === `/antraege/${jobId}`, 'the Antrag page');
  check((await page.textContent('#status')).trim() === 'zur Klärung', 'state zur Klärung');
  await axe(page, 'submission');
  await shot(page, 'dashboard-antrag.png');

  // 4. keyboard: the review actions are reached with Tab, with a visible focus
  await page.evaluate(() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); });
  await page.focus('h1 ~ dl, h1').catch(() => {});
  const wanted = ['btn-korrigieren', 'btn-freigeben', 'btn-ablehnen'];
  const reached = {};
  for (let i = 0; i < 400 && Object.keys(reached).length < wanted.length; i++) {
    await page.keyboard.press('Tab');
    const info = await page.evaluate(() => {
      const el = document.activeElement;
      const cs = getComputedStyle(el);
      return { id: el.id, outlineStyle: cs.outlineStyle, outlineWidth: cs.outlineWidth,
               focusVisible: el.matches(':focus-visible') };
    });
    if (wanted.includes(info.id) && !reached[info.id]) reached[info.id] = info;
  }
  result.focus = reached;
  for (const id of wanted) {
    const f = reached[id];
    check(f, `${id} reachable with Tab`);
    if (f) {
      check(f.focusVisible && f.outlineStyle !== 'none' && parseFloat(f.outlineWidth) >= 2,
            `${id} shows a visible focus outline (${f.outlineStyle} ${f.outlineWidth})`);
    }
  }
  // without focus the same button has no outline: the style comes from :focus-visible
  const idle = await page.evaluate(() => {
    document.activeElement.blur();
    return getComputedStyle(document.getElementById('btn-freigeben')).outlineStyle;
  });
  check(idle === 'none', `no outline without focus (${idle})`);

  // 5. correct a field: the script puts the current value into the box
  await page.selectOption('#korr-feld', 'geburtsdatum');
  check(await page.inputValue('#korr-wert') === '2014-09-17',
        'choosing a field fills in its current value (dash.js runs under the CSP)');
  await page.fill('#korr-wert', '2001-09-17');
  await Promise.all([page.waitForNavigation(), page.click('#btn-korrigieren')]);
  check((await page.textContent('h1')).includes('Feld korrigieren'), 'the correction is confirmed first');
  await axe(page, 'confirmation');
  await Promise.all([page.waitForNavigation(), page.click('#btn-bestaetigen')]);
  const msg1 = await page.textContent('.msg');
  check(msg1.includes('Feld geburtsdatum korrigiert'), 'correction message: ' + msg1);
  check(await page.evaluate(() => document.activeElement.classList.contains('msg')),
        'the message gets the focus');

  // 6. approve, confirm, and see it delivered
  await Promise.all([page.waitForNavigation(), page.click('#btn-freigeben')]);
  await Promise.all([page.waitForNavigation(), page.click('#btn-bestaetigen')]);
  const msg2 = await page.textContent('.msg');
  check(msg2.includes('freigegeben'), 'approval message: ' + msg2);
  let state = '';
  for (let i = 0; i < 60; i++) {
    await page.reload();
    state = (await page.textContent('#status')).trim();
    if (state === 'übertragen') break;
    await page.waitForTimeout(250);
  }
  check(state === 'übertragen', `the Antrag was delivered (state: ${state})`);
  const verlauf = await page.textContent('#verlauf');
  check(verlauf.includes('bereit zur Übertragung'), 'the Verlauf shows the approval');

  // 7. the Protokoll of all jobs names who approved
  await Promise.all([page.waitForNavigation(), page.click('nav >> text=Protokoll')]);
  check((await page.textContent('main table')).includes('bereit zur Übertragung'),
        'the Protokoll shows the approval');
  await axe(page, 'protokoll');

  check(result.csp.length === 0, 'no Content-Security-Policy violations: ' + result.csp.join('; '));
} catch (e) {
  result.failures.push('exception: ' + (e && e.stack ? e.stack : e));
  console.error(e);
} finally {
  await browser.close();
}
result.ok = result.failures.length === 0;
console.log('RESULT ' + JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
