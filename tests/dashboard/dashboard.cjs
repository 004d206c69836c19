// Drives the dashboard in Debian's Chromium (playwright-core, no browser download): connects with
// the token, registers a rule and sees it running, sees its alerts arrive live, submits a bad rule
// and sees the error at its line; screenshots each step into SCREENSHOTS.
// Environment: EDDY_URL, EDDY_TOKEN, EDDY_PLAYWRIGHT (the playwright-core module), SCREENSHOTS.
"use strict";
const { chromium } = require(process.env.EDDY_PLAYWRIGHT);

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.EDDY_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const shots = process.env.SCREENSHOTS;
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  // Script errors only: the browser also reports the API's 401s and 400s, which are answers.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
  });
  try {
    await page.goto(process.env.EDDY_URL + "/");
    await page.fill("#token", process.env.EDDY_TOKEN);
    await page.click("#connect");
    await page.waitForSelector("#connection.live", { timeout: 10000 });

    await page.fill("#rule-name", "hot");
    await page.fill("#rule-sql", "INSERT INTO alerts\nSELECT device_id, temp FROM readings WHERE temp > 80;");
    await page.click("#new-rule button[type=submit]");
    await page.waitForSelector("#errors .submitted", { timeout: 10000 });
    await page.waitForSelector('#rules tr[data-rule="hot"] .badge.running', { timeout: 10000 });
    // Alerts arrive live, from the stream.
    await page.waitForSelector("#alerts li .rule", { timeout: 30000 });
    const first = await page.textContent("#alerts li");
    if (!first.includes("hot") || !first.includes("boiler")) throw new Error("unexpected alert: " + first);
    // Counters move, and the chart has had a few samples.
    await page.waitForFunction(() => {
      const cells = document.querySelectorAll('#rules tr[data-rule="hot"] td.num');
      return cells.length > 1 && Number(cells[1].textContent.replace(/\D/g, "")) > 0;
    }, null, { timeout: 15000 });
    await page.waitForTimeout(4500);
    await page.screenshot({ path: shots + "/dashboard-running.png", fullPage: true });

    await page.fill("#rule-name", "broken");
    await page.fill("#rule-sql", "INSERT INTO alerts\nSELECT device_id, tempp FROM readings;");
    await page.click("#new-rule button[type=submit]");
    await page.waitForSelector("#errors .message", { timeout: 10000 });
    const message = await page.textContent("#errors .message");
    if (!message.startsWith("line 2, column")) throw new Error("the error is not at its line: " + message);
    const bad = await page.textContent("#errors .sql .bad");
    if (!bad.includes("tempp")) throw new Error("the wrong line is marked: " + bad);
    await page.screenshot({ path: shots + "/dashboard-error.png", fullPage: true });

    await page.click('#rules tr[data-rule="hot"] button:has-text("pause")');
    await page.waitForSelector('#rules tr[data-rule="hot"] .badge.paused', { timeout: 10000 });
    await page.screenshot({ path: shots + "/dashboard-paused.png", fullPage: true });
    if (problems.length) throw new Error("the page reported: " + problems.join("; "));
    console.log("dashboard: every step passed");
  } catch (e) {
    await page.screenshot({ path: shots + "/dashboard-failure.png", fullPage: true }).catch(() => {});
    const errors = await page.textContent("#errors").catch(() => "");
    throw new Error(e.message + (errors ? "\nthe page says: " + errors : ""));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error("dashboard: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
