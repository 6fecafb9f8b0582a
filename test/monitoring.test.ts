/**
 * The monitoring files teams import: Prometheus rules (deploy/prometheus) and the Grafana dashboard
 * (deploy/grafana/storefront.json). promtool checks the rules and runs their unit tests (skipped, with a notice,
 * where promtool is not installed: `apt-get install prometheus`); every metric family and label the rules and
 * the dashboard query must be one the service's code defines, so renaming a metric or a label breaks this test.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = join(__dirname, '..');
const PROMETHEUS = join(ROOT, 'deploy', 'prometheus');
const RULE_FILES = ['alerts.yml', 'rules.yml'];
const RULE_TESTS = 'alerts.test.yml';
const DASHBOARD = join(ROOT, 'deploy', 'grafana', 'storefront.json');
/** Where the metrics are defined: the service's own code (tests excluded). */
const SOURCE_DIRS = ['lib', 'gateway', 'subgraphs'];
/** Labels every series has: `service` (each registry's default label, lib/metrics.ts) and the scrape's target labels. */
const COMMON_LABELS = ['service', 'job', 'instance'];
const PROMTOOL = process.env.PROMTOOL_PATH ?? 'promtool';

/** Why promtool cannot run here, or null. */
function promtoolUnavailable(): string | null {
  const run = spawnSync(PROMTOOL, ['--version'], { encoding: 'utf8' });
  if (run.error)
    return `${PROMTOOL} could not be started (${run.error.message}): apt-get install -y prometheus, or set PROMTOOL_PATH`;
  if (run.status !== 0) return `${PROMTOOL} --version exited ${run.status}`;
  return null;
}
const unavailable = promtoolUnavailable();
if (unavailable)
  console.warn(`\nSkipping the promtool checks of deploy/prometheus (test/monitoring.test.ts): ${unavailable}.`);
const itWithPromtool: jest.It = unavailable ? it.skip : it;

function promtool(...args: string[]): string {
  const run = spawnSync(PROMTOOL, args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  const output = `${run.stdout ?? ''}${run.stderr ?? ''}`;
  if (run.error || run.status !== 0)
    throw new Error(
      `promtool ${args.join(' ')} failed (exit ${run.status}${run.error ? `, ${run.error.message}` : ''}):\n${output}`,
    );
  return output;
}

// ---- The metric families the code defines

interface Family {
  /** The name, or a pattern for a name built from a template (`entity_cache_${kind}_total`). */
  name: string | RegExp;
  type: 'Counter' | 'Gauge' | 'Histogram' | 'Summary' | 'default';
  /** Its labelNames (plus the common ones); null when unknown (prom-client's default metrics). */
  labels: Set<string> | null;
  where: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory())
      return ['node_modules', '__generated__', 'dist'].includes(entry.name) ? [] : sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

/** The text of the object literal that opens at `start` (a `{`), braces counted. */
function objectAt(text: string, start: number): string {
  let depth = 0;
  for (let index = start; index < text.length; index++) {
    if (text[index] === '{') depth++;
    else if (text[index] === '}' && --depth === 0) return text.slice(start, index + 1);
  }
  return text.slice(start);
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Every `new Counter|Gauge|Histogram|Summary({ name: '…', labelNames: [...] })` of the service, and prom-client's defaults. */
function familiesInCode(): Family[] {
  const families: Family[] = [];
  let defaults = false;
  for (const file of SOURCE_DIRS.flatMap((dir) => sourceFiles(join(ROOT, dir)))) {
    const text = readFileSync(file, 'utf8');
    if (/\bcollectDefaultMetrics\(/.test(text)) defaults = true;
    const constructor = /new\s+(Counter|Gauge|Histogram|Summary)\s*(?:<[^>]*>)?\s*\(\s*\{/g;
    for (let match = constructor.exec(text); match; match = constructor.exec(text)) {
      const object = objectAt(text, match.index + match[0].length - 1);
      const name = /\bname:\s*(?:'([^']+)'|`([^`]+)`)/.exec(object);
      if (!name) continue;
      const labelNames = /\blabelNames:\s*\[([^\]]*)\]/.exec(object)?.[1] ?? '';
      families.push({
        name: name[1] ?? new RegExp(`^${escapeRegExp(name[2]!).replace(/\\\$\\\{[^}]*\\\}/g, '[a-z0-9_]+')}$`),
        type: match[1] as Family['type'],
        labels: new Set([...COMMON_LABELS, ...[...labelNames.matchAll(/'([^']+)'/g)].map((label) => label[1]!)]),
        where: relative(ROOT, file),
      });
    }
  }
  // prom-client's default metrics (nodejs_eventloop_lag_*, process_cpu_*, …), where the service collects them.
  if (defaults) {
    const dir = join(ROOT, 'node_modules', 'prom-client', 'lib', 'metrics');
    for (const file of readdirSync(dir).filter((name) => name.endsWith('.js')))
      for (const [, name] of readFileSync(join(dir, file), 'utf8').matchAll(/'((?:nodejs|process)_[a-z0-9_]+)'/g))
        families.push({ name: name!, type: 'default', labels: null, where: `prom-client/lib/metrics/${file}` });
  }
  return families;
}

const FAMILIES = familiesInCode();

/** The family a series name belongs to (a histogram's `_bucket`, `_count` and `_sum` series included), and its labels. */
function seriesFamily(series: string): { family: Family; labels: Set<string> | null } | undefined {
  for (const family of FAMILIES) {
    const named = (name: string) => (typeof family.name === 'string' ? family.name === name : family.name.test(name));
    const suffixes =
      family.type === 'Histogram'
        ? ['_bucket', '_count', '_sum']
        : family.type === 'Summary'
          ? ['', '_count', '_sum']
          : family.type === 'default'
            ? ['', '_bucket', '_count', '_sum']
            : [''];
    for (const suffix of suffixes) {
      if (!series.endsWith(suffix) || !named(series.slice(0, series.length - suffix.length))) continue;
      if (!family.labels) return { family, labels: null };
      const extra = suffix === '_bucket' ? ['le'] : family.type === 'Summary' && suffix === '' ? ['quantile'] : [];
      return { family, labels: new Set([...family.labels, ...extra]) };
    }
  }
  return undefined;
}

// ---- What a PromQL expression uses

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
  'atan2',
]);

interface Uses {
  /** Metric (or recorded) names. */
  names: string[];
  /** Label names in each selector's matchers, by metric. */
  matchers: { name: string; labels: string[] }[];
  /** Label names of by/without/on/ignoring/group_left/group_right. */
  grouping: string[];
}

function promqlUses(expr: string): Uses {
  // String literals go first: label values and Grafana's $variables live in them.
  let text = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""').replace(/#.*$/gm, '');
  const matchers = [...text.matchAll(/([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}/g)].map((match) => ({
    name: match[1]!,
    labels: [...match[2]!.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((label) => label[1]!),
  }));
  const grouping: string[] = [];
  text = text.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_, labels: string) => {
    grouping.push(
      ...labels
        .split(',')
        .map((label) => label.trim())
        .filter(Boolean),
    );
    return ' ';
  });
  text = text
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|[smhdwy])?\b/gi, ' ');
  const names = [...text.matchAll(/[a-zA-Z_:][\w:]*/g)]
    .filter((match) => !/^\s*\(/.test(text.slice(match.index + match[0].length)))
    .map((match) => match[0])
    .filter((name) => !KEYWORDS.has(name.toLowerCase()));
  return { names: [...new Set(names)], matchers, grouping };
}

/**
 * What in an expression the code does not define: unknown metric names, and labels that no metric of the
 * expression has. Recorded names must be recorded by `records`.
 */
function unknownIn(expr: string, records: Set<string>): string[] {
  const uses = promqlUses(expr);
  const problems: string[] = [];
  const allowed = new Set<string>(COMMON_LABELS);
  let anyLabels = false;
  for (const name of uses.names) {
    if (name.includes(':')) {
      if (!records.has(name)) problems.push(`${name}: no recording rule records it`);
      anyLabels = true;
      continue;
    }
    const found = seriesFamily(name);
    if (!found) problems.push(`${name}: no metric family of the code (name: '…') gives this series`);
    else if (found.labels) for (const label of found.labels) allowed.add(label);
    else anyLabels = true;
  }
  for (const { name, labels } of uses.matchers) {
    const found = seriesFamily(name);
    for (const label of labels)
      if (found?.labels && !found.labels.has(label)) problems.push(`${name}{${label}}: ${name} has no label ${label}`);
  }
  if (!anyLabels)
    for (const label of uses.grouping)
      if (!allowed.has(label)) problems.push(`(${label}): no metric of the expression has the label ${label}`);
  return problems;
}

// ---- The rule files, read line by line (promtool, where installed, checks they are valid YAML and valid rules)

interface Rule {
  kind: 'alert' | 'record';
  name: string;
  expr: string;
  /** The rule's lines as written (for, labels, annotations). */
  text: string;
}

function rulesIn(file: string): Rule[] {
  const lines = readFileSync(join(PROMETHEUS, file), 'utf8').split('\n');
  const rules: Rule[] = [];
  let current: Rule | null = null;
  let ruleIndent = 0;
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    const indent = line.length - line.trimStart().length;
    const start = /^(\s*)- (alert|record):\s*(\S+)/.exec(line);
    if (start) {
      current = { kind: start[2] as Rule['kind'], name: start[3]!.replace(/^['"]|['"]$/g, ''), expr: '', text: '' };
      ruleIndent = start[1]!.length;
      rules.push(current);
    } else if (current && line.trim() && indent <= ruleIndent) current = null;
    if (!current) continue;
    current.text += `${line}\n`;
    const expr = /^(\s*)expr:\s*(.*)$/.exec(line);
    if (!expr) continue;
    if (/^[|>]/.test(expr[2]!)) {
      const block: string[] = [];
      while (index + 1 < lines.length) {
        const next = lines[index + 1]!;
        if (next.trim() && next.length - next.trimStart().length <= expr[1]!.length) break;
        block.push(next);
        current.text += `${next}\n`;
        index++;
      }
      current.expr = block.join('\n').trim();
    } else
      current.expr = expr[2]!
        .trim()
        .replace(/^'(.*)'$/, '$1')
        .replace(/^"(.*)"$/, '$1');
  }
  return rules;
}

const RULES = RULE_FILES.flatMap((file) => rulesIn(file).map((rule) => ({ ...rule, file })));
const RECORDS = new Set(RULES.filter((rule) => rule.kind === 'record').map((rule) => rule.name));
const ALERTS = RULES.filter((rule) => rule.kind === 'alert');

/** GitHub's anchors of README.md's headings. */
function readmeAnchors(): Set<string> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  return new Set(
    [...readme.matchAll(/^#{1,6}\s+(.+)$/gm)].map((heading) =>
      heading[1]!
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    ),
  );
}

describe('Prometheus rules (deploy/prometheus)', () => {
  it('are found: every rule has an expression', () => {
    expect(ALERTS.length).toBeGreaterThanOrEqual(10);
    expect(RECORDS.size).toBeGreaterThan(0);
    for (const file of RULE_FILES) {
      const declared = readFileSync(join(PROMETHEUS, file), 'utf8').match(/^\s*- (alert|record):/gm) ?? [];
      expect(RULES.filter((rule) => rule.file === file)).toHaveLength(declared.length);
    }
    expect(RULES.filter((rule) => !rule.expr).map((rule) => rule.name)).toEqual([]);
  });

  it('use only metrics and labels the code defines', () => {
    expect(FAMILIES.length).toBeGreaterThan(15);
    const problems = RULES.flatMap((rule) =>
      unknownIn(rule.expr, RECORDS).map((problem) => `${rule.file} ${rule.name}: ${problem}`),
    );
    expect(problems).toEqual([]);
  });

  it('name the signals they watch: every family the brief lists is used by an alert', () => {
    const used = new Set(ALERTS.flatMap((rule) => promqlUses(rule.expr).names));
    for (const series of [
      'graphql_request_duration_seconds_count',
      'graphql_request_duration_seconds_bucket',
      'gateway_admission',
      'gateway_refusals_total',
      'nodejs_eventloop_lag_p99_seconds',
      'subgraph_circuit_breaker_state',
      'subgraph_ready',
      'rate_limit_store_degraded',
      'jobs',
      'job_duration_seconds_count',
      'webhook_deliveries_total',
    ])
      expect([...used]).toContain(series);
  });

  it('give every alert a for, a severity, a summary, a description and a runbook_url anchored in README.md', () => {
    const anchors = readmeAnchors();
    const problems: string[] = [];
    for (const alert of ALERTS) {
      if (!/^\s+for:\s*\d+[smh]\s*$/m.test(alert.text)) problems.push(`${alert.name}: no for`);
      if (!/^\s+severity:\s*['"]?(warning|critical)['"]?\s*$/m.test(alert.text))
        problems.push(`${alert.name}: no severity`);
      if (!/^\s+summary:\s*\S/m.test(alert.text)) problems.push(`${alert.name}: no summary`);
      if (!/^\s+description:\s*\S/m.test(alert.text)) problems.push(`${alert.name}: no description`);
      const runbook = /^\s+runbook_url:\s*['"]?README\.md#([\w-]+)['"]?\s*$/m.exec(alert.text);
      if (!runbook) problems.push(`${alert.name}: no runbook_url README.md#…`);
      else if (!anchors.has(runbook[1]!)) problems.push(`${alert.name}: README.md has no heading #${runbook[1]}`);
    }
    expect(problems).toEqual([]);
  });

  it('have a unit test that fires each alert', () => {
    const tests = readFileSync(join(PROMETHEUS, RULE_TESTS), 'utf8');
    // Each alert_rule_test case: its alertname and whether it expects alerts.
    const firing = new Set(
      [...tests.matchAll(/alertname:\s*(\w+)\s*\n\s*exp_alerts:\s*\n\s*- exp_labels/g)].map((match) => match[1]!),
    );
    expect([...new Set(ALERTS.map((alert) => alert.name))].filter((name) => !firing.has(name))).toEqual([]);
  });

  itWithPromtool('pass promtool check rules', () => {
    const output = promtool('check', 'rules', ...RULE_FILES.map((file) => join(PROMETHEUS, file)));
    expect(output.match(/SUCCESS/g)).toHaveLength(RULE_FILES.length);
  });

  itWithPromtool('pass their promtool unit tests (alerts.test.yml)', () => {
    expect(promtool('test', 'rules', join(PROMETHEUS, RULE_TESTS))).toMatch(/SUCCESS/);
  });
});

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: { expr: string; refId: string; datasource?: { uid: string } }[];
  panels?: Panel[];
}

describe('Grafana dashboard (deploy/grafana/storefront.json)', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8'));
  const panels: Panel[] = (dashboard.panels as Panel[]).flatMap((panel) => [panel, ...(panel.panels ?? [])]);
  const queries = panels
    .filter((panel) => panel.type !== 'row')
    .flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel, target })));

  it('parses, with a Prometheus datasource variable and a service variable', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(dashboard.uid).toEqual(expect.any(String));
    const variables = Object.fromEntries(dashboard.templating.list.map((v: { name: string }) => [v.name, v]));
    expect(variables.datasource).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(variables.service).toMatchObject({ type: 'query', datasource: { uid: '${datasource}' }, multi: true });
  });

  it('has unique panel ids, and every panel and query on ${datasource}', () => {
    const ids = panels.map((panel) => panel.id);
    expect(ids.every((id) => Number.isInteger(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(queries.length).toBeGreaterThan(20);
    for (const { panel, target } of queries) {
      expect({ title: panel.title, uid: panel.datasource?.uid }).toEqual({ title: panel.title, uid: '${datasource}' });
      expect({ title: panel.title, uid: target.datasource?.uid ?? panel.datasource?.uid }).toEqual({
        title: panel.title,
        uid: '${datasource}',
      });
    }
  });

  it('filters every selector by the service variable', () => {
    const unfiltered = queries.flatMap(({ panel, target }) =>
      [...target.expr.matchAll(/([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}/g)]
        .filter((selector) => !/service=~"\$service"/.test(selector[2]!))
        .map((selector) => `${panel.title}: ${selector[0]}`),
    );
    expect(unfiltered).toEqual([]);
  });

  it('queries only metrics and labels the code defines', () => {
    const problems = queries.flatMap(({ panel, target }) =>
      unknownIn(target.expr, RECORDS).map((problem) => `${panel.title} [${target.refId}]: ${problem}`),
    );
    for (const variable of dashboard.templating.list as { name: string; type: string; definition?: string }[]) {
      const labelValues = /^label_values\((\w+),\s*(\w+)\)$/.exec(variable.definition ?? '');
      if (variable.type !== 'query') continue;
      if (!labelValues) problems.push(`variable ${variable.name}: not label_values(metric, label)`);
      else problems.push(...unknownIn(`sum by (${labelValues[2]}) (${labelValues[1]})`, RECORDS));
    }
    expect(problems).toEqual([]);
  });
});

describe('the check itself', () => {
  it('catches a renamed metric, a label the metric lacks and a grouping label no metric has', () => {
    expect(unknownIn('rate(graphql_requests_total[5m])', RECORDS)).toHaveLength(1);
    expect(
      unknownIn('sum by (service) (rate(graphql_request_duration_seconds_count{result="error"}[5m]))', RECORDS),
    ).toEqual([
      'graphql_request_duration_seconds_count{result}: graphql_request_duration_seconds_count has no label result',
    ]);
    expect(unknownIn('max by (subgraph) (gateway_admission)', RECORDS)).toHaveLength(1);
    expect(
      unknownIn('histogram_quantile(0.99, sum by (le) (rate(subgraph_fetch_duration_seconds_bucket[5m])))', RECORDS),
    ).toEqual([]);
    expect(unknownIn('rate(entity_cache_hits_total[5m]) + nodejs_eventloop_lag_p99_seconds', RECORDS)).toEqual([]);
  });
});
