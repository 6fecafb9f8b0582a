/**
 * The shipped deployment files (Dockerfile, compose.yaml, deploy/k8s/), checked with what runs without a container
 * engine or a cluster: `npm run check:deploy` validates them (linters and schemas, see scripts/check-deploy.ts); the
 * tests here check that they agree with each other and with the code (every subgraph of the registry deployed,
 * ports, probes, grace periods, commands that are npm scripts, the settings lib/config.ts accepts); and the image's
 * commands run here, through npm, with the environment compose.yaml gives them: the migrations apply, every subgraph,
 * the gateway and a worker answer their probes and serve a query and a bulk job (through the shared JOBS_DIR), and
 * each exits 0 on SIGTERM.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import pg from 'pg';
import { createClient } from 'redis';
import { parse, parseAllDocuments } from 'yaml';
import { issueToken } from '../gateway/auth';
import { loadConfig } from '../lib/config';
import { generateDataset, seed } from '../prisma/seed';
import { commandWords, healthPort, registryPorts } from '../scripts/healthcheck';
import { SUBGRAPHS } from '../subgraphs/registry';
import { adminQuery, freePort, withDatabase } from './databases';

const ROOT = join(__dirname, '..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const scripts: Record<string, string> = JSON.parse(read('package.json')).scripts;
const dependencies: Record<string, string> = JSON.parse(read('package.json')).dependencies;

/** Secrets as an operator sets them (32+ characters), for the settings that must have them. */
const SAMPLE_SECRETS: Record<string, string> = {
  JWT_SECRET: 'deploy-test-jwt-secret-0123456789abcdef',
  IDENTITY_SECRET: 'deploy-test-identity-secret-0123456789abcdef',
};

// ------------------------------------------------------------------------------------------------- the files

const compose = parse(read('compose.yaml'), { merge: true });
const composeServices: Record<string, any> = compose.services;
/** The services that run the image (the others are PostgreSQL and Redis). */
const appServices = Object.entries(composeServices).filter(([, service]) => service.image?.startsWith('storefront'));

/** Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}. */
function interpolate(value: string, vars: Record<string, string | undefined>): string {
  return value.replace(
    /\$\{(\w+)(?:(:?[-?])([^}]*))?\}/g,
    (_whole, name: string, operator?: string, operand?: string) => {
      const set = vars[name];
      const present = operator?.startsWith(':') ? Boolean(set) : set !== undefined;
      if (present) return set!;
      if (operator?.endsWith('?')) throw new Error(`compose.yaml needs ${name}: ${operand}`);
      return operator ? operand! : '';
    },
  );
}

/** A compose service's environment once compose has read it, with the secrets an operator puts in .env. */
const composeEnv = (service: any): Record<string, string> =>
  Object.fromEntries(
    Object.entries(service.environment ?? {}).map(([key, value]) => [key, interpolate(String(value), SAMPLE_SECRETS)]),
  );

const kustomization = parse(read('deploy/k8s/kustomization.yaml'));
const kubeObjects: any[] = (kustomization.resources as string[]).flatMap((file) =>
  parseAllDocuments(read(`deploy/k8s/${file}`)).map((document) => document.toJS()),
);
const ofKind = (kind: string) => kubeObjects.filter((object) => object.kind === kind);
const named = (kind: string, name: string) => {
  const found = ofKind(kind).find((object) => object.metadata.name === name);
  if (!found) throw new Error(`deploy/k8s has no ${kind} named ${name}`);
  return found;
};
const deployments = ofKind('Deployment');
const configMap: Record<string, string> = named('ConfigMap', 'storefront-config').data;
/** KEY=value lines of an env file (secrets.env.example). */
const envFile = (text: string) =>
  Object.fromEntries(
    text
      .split('\n')
      .filter((line) => /^\w+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
const secretsExample: Record<string, string> = envFile(read('deploy/k8s/secrets.env.example'));
/** What a pod's process sees: the ConfigMap and the Secret (secrets.env, here its example with secrets filled in). */
const kubeEnv: Record<string, string> = { ...configMap, ...secretsExample, ...SAMPLE_SECRETS };

const dockerfile = DockerfileParser.parse(read('Dockerfile'));
const stages = dockerfile.getFROMs().map((from) => ({ name: from.getBuildStage(), line: from.getRange().start.line }));
const finalStage = stages.at(-1)!;
/** The instructions of a stage, by its name (the last: the image). */
function stageInstructions(name: string | null | undefined): Instruction[] {
  const index = stages.findIndex((stage) => stage.name === name);
  const start = stages[index]!.line;
  const end = stages[index + 1]?.line ?? Infinity;
  return dockerfile.getInstructions().filter((instruction) => {
    const line = instruction.getRange().start.line;
    return line > start && line < end;
  });
}
const argumentsOf = (instruction: Instruction) =>
  instruction.getTextContent().slice(instruction.getKeyword().length).trim();
const finalInstructions = stageInstructions(finalStage.name);
const lastOf = (keyword: string) =>
  finalInstructions.filter((instruction) => instruction.getKeyword() === keyword).at(-1);
const imageCommand: string[] = JSON.parse(argumentsOf(lastOf('CMD')!));

/** The npm script a command runs (`npm run start:subgraph -- catalog` → start:subgraph), and its arguments. */
function npmScript(command: readonly string[]): { script: string; args: string[] } {
  if (command[0] !== 'npm') throw new Error(`not an npm script: ${command.join(' ')}`);
  if (command[1] === 'start') return { script: 'start', args: command.slice(2).filter((arg) => arg !== '--') };
  if (command[1] !== 'run') throw new Error(`not an npm script: ${command.join(' ')}`);
  return { script: command[2]!, args: command.slice(3).filter((arg) => arg !== '--') };
}

/** Every command the files run, and where. */
const commands: Array<{ where: string; command: string[] }> = [
  { where: 'Dockerfile CMD', command: imageCommand },
  ...appServices.map(([name, service]) => ({ where: `compose.yaml ${name}`, command: service.command as string[] })),
  ...[...deployments, ...ofKind('Job')].flatMap((object) =>
    object.spec.template.spec.containers.map((container: any) => ({
      where: `deploy/k8s ${object.kind}/${object.metadata.name}`,
      command: container.command as string[],
    })),
  ),
];

/** The port a role listens on, by the settings lib/config.ts reads. */
function rolePort(command: readonly string[], env: Record<string, string>): number | null {
  const config = loadConfig(env);
  const { script, args } = npmScript(command);
  if (script === 'start:gateway' || script === 'start') return config.GATEWAY_PORT;
  if (script === 'start:worker') return config.WORKER_PORT;
  if (script === 'start:subgraph') return config.subgraphs[args[0] as keyof typeof config.subgraphs].port;
  return null;
}

/** Seconds of a compose duration ("15s", "1m30s"). */
const seconds = (duration: string) =>
  [...duration.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)].reduce(
    (sum, [, amount, unit]) =>
      sum + Number(amount) * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit as 'ms' | 's' | 'm' | 'h'],
    0,
  );

/** A container's port by name or number. */
const containerPort = (container: any, port: string | number): number =>
  typeof port === 'number' ? port : container.ports.find((candidate: any) => candidate.name === port)?.containerPort;

const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([key, value]) => labels?.[key] === value);

// ------------------------------------------------------------------------------------------------ validation

describe('npm run check:deploy', () => {
  const run = (root?: string) =>
    spawnSync(
      process.execPath,
      ['--disable-warning=MODULE_TYPELESS_PACKAGE_JSON', 'scripts/check-deploy.ts', ...(root ? [root] : [])],
      { cwd: ROOT, encoding: 'utf8' },
    );

  it('finds the Dockerfile, compose.yaml and every Kubernetes manifest valid', () => {
    const result = run();
    expect(`${result.stdout}${result.stderr}`).toMatch(/are valid/);
    expect(result.status).toBe(0);
  });

  it('names the mistakes it is there for, one for each tool', () => {
    const copy = mkdtempSync(join(tmpdir(), 'storefront-deploy-'));
    try {
      cpSync(join(ROOT, 'deploy', 'k8s'), join(copy, 'deploy', 'k8s'), { recursive: true });
      const edit = (file: string, from: string | RegExp, to: string) => {
        const source = read(file);
        expect(source).toMatch(from);
        writeFileSync(join(copy, file), source.replace(from, to));
      };
      edit('Dockerfile', /^USER .*$/m, 'USER root');
      edit('compose.yaml', 'stop_grace_period:', 'stop_grace_periode:');
      edit('deploy/k8s/catalog.yaml', 'livenessProbe:', 'livenesProbe:');
      edit('deploy/k8s/gateway.yaml', 'averageUtilization: 70', "averageUtilization: '70%'");
      const result = run(copy);
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/Dockerfile: the final stage runs as root/);
      expect(result.stderr).toMatch(
        /compose\.yaml: \/services\/\w+ must NOT have additional properties: stop_grace_periode/,
      );
      expect(result.stderr).toMatch(
        /deploy\/k8s\/catalog\.yaml: Deployment\/catalog: .*'"livenesProbe"' does not exist/,
      );
      expect(result.stderr).toMatch(
        /deploy\/k8s\/gateway\.yaml: HorizontalPodAutoscaler\/gateway: .*averageUtilization must be integer/,
      );
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------- consistency

describe('the deployment files agree with the code and with each other', () => {
  it('run npm scripts of package.json, and every role somewhere', () => {
    for (const { where, command } of commands) {
      const { script, args } = npmScript(command);
      expect({ where, script, known: script in scripts }).toEqual({ where, script, known: true });
      if (script === 'start:subgraph') expect(SUBGRAPHS.map((entry) => entry.name)).toContain(args[0]);
    }
    const roles = (prefix: string) =>
      new Set(
        commands
          .filter(({ where }) => where.startsWith(prefix))
          .map(({ command }) => npmScript(command))
          .map(({ script, args }) => [script, ...args].join(' ')),
      );
    const expected = [
      'db:migrate',
      'start:gateway',
      'start:worker',
      ...SUBGRAPHS.map((s) => `start:subgraph ${s.name}`),
    ];
    expect([...roles('compose.yaml')].sort()).toEqual(expected.sort());
    expect([...roles('deploy/k8s')].sort()).toEqual(expected.sort());
  });

  it.each(SUBGRAPHS.map((entry) => [entry.name, entry.port] as const))(
    'deploy subgraph %s on its port %i, where the others reach it',
    (name, port) => {
      const setting = `SUBGRAPH_${name.toUpperCase()}`;
      const command = ['npm', 'run', 'start:subgraph', '--', name];
      // compose: its service, and every process's settings naming it.
      expect(composeServices[name].command).toEqual(command);
      for (const [service, definition] of appServices) {
        const env = composeEnv(definition);
        expect({ service, port: env[`${setting}_PORT`], url: env[`${setting}_URL`] }).toEqual({
          service,
          port: String(port),
          url: `http://${name}:${port}/graphql`,
        });
      }
      // Kubernetes: its Deployment, Service and PodDisruptionBudget, and the settings every pod reads.
      const deployment = named('Deployment', name);
      const [container] = deployment.spec.template.spec.containers;
      expect(container.command).toEqual(command);
      expect(container.ports.map((p: any) => p.containerPort)).toEqual([port]);
      const service = named('Service', name);
      expect(service.spec.ports).toHaveLength(1);
      expect(service.spec.ports[0].port).toBe(port);
      expect(containerPort(container, service.spec.ports[0].targetPort)).toBe(port);
      expect(matches(service.spec.selector, deployment.spec.template.metadata.labels)).toBe(true);
      expect(
        matches(named('PodDisruptionBudget', name).spec.selector.matchLabels, deployment.spec.template.metadata.labels),
      ).toBe(true);
      expect(configMap[`${setting}_PORT`]).toBe(String(port));
      expect(configMap[`${setting}_URL`]).toBe(`http://${name}:${port}/graphql`);
    },
  );

  it('give every process settings lib/config.ts accepts, with the shared ones it needs', () => {
    const environments = [
      ...appServices.map(([name, service]) => ({ where: `compose.yaml ${name}`, env: composeEnv(service) })),
      { where: 'deploy/k8s', env: kubeEnv },
    ];
    for (const { where, env } of environments) {
      expect(() => loadConfig(env)).not.toThrow();
      const config = loadConfig(env);
      expect({
        where,
        host: config.HOST,
        database: Boolean(config.DATABASE_URL),
        redis: Boolean(config.REDIS_URL),
      }).toEqual({
        where,
        host: '0.0.0.0',
        database: true,
        redis: true,
      });
    }
    // Secrets are never written into the files: compose takes them from .env, Kubernetes from secrets.env.
    for (const [, service] of appServices) {
      expect(service.environment.JWT_SECRET).toMatch(/^\$\{JWT_SECRET:\?/);
      expect(service.environment.IDENTITY_SECRET).toMatch(/^\$\{IDENTITY_SECRET:\?/);
    }
    expect(secretsExample.JWT_SECRET).toBe('');
    expect(secretsExample.IDENTITY_SECRET).toBe('');
    expect(Object.keys(secretsExample).sort()).toEqual(['DATABASE_URL', 'IDENTITY_SECRET', 'JWT_SECRET', 'REDIS_URL']);
    expect(kustomization.secretGenerator).toEqual([{ name: 'storefront-secrets', envs: ['secrets.env'] }]);
    for (const ignored of ['.env', 'deploy/k8s/secrets.env']) expect(read('.gitignore').split('\n')).toContain(ignored);
    // Every pod reads the ConfigMap and the Secret.
    for (const object of [...deployments, ...ofKind('Job')]) {
      for (const container of object.spec.template.spec.containers) {
        expect(container.envFrom).toEqual([
          { configMapRef: { name: 'storefront-config' } },
          { secretRef: { name: 'storefront-secrets' } },
        ]);
      }
    }
  });

  it('put JOBS_DIR on one volume shared by the gateway and the workers, who reach the gateway', () => {
    // compose: one named volume.
    const jobsDir = composeEnv(composeServices.gateway).JOBS_DIR;
    for (const name of ['gateway', 'worker']) {
      expect(composeEnv(composeServices[name]).JOBS_DIR).toBe(jobsDir);
      expect(composeServices[name].volumes.map((volume: string) => volume.split(':').slice(0, 2).join(':'))).toEqual([
        `jobs:${jobsDir}`,
      ]);
    }
    expect(compose.volumes).toHaveProperty('jobs');
    expect(composeEnv(composeServices.worker).JOBS_GATEWAY_URL).toBe(
      `http://gateway:${composeEnv(composeServices.worker).GATEWAY_PORT}/graphql`,
    );
    // Kubernetes: the ReadWriteMany claim, mounted at JOBS_DIR by every gateway and worker.
    const claim = named('PersistentVolumeClaim', 'storefront-jobs');
    expect(claim.spec.accessModes).toEqual(['ReadWriteMany']);
    for (const name of ['gateway', 'worker']) {
      const pod = named('Deployment', name).spec.template.spec;
      const volume = pod.volumes.find(
        (candidate: any) => candidate.persistentVolumeClaim?.claimName === claim.metadata.name,
      );
      expect(volume).toBeDefined();
      expect(pod.containers[0].volumeMounts).toContainEqual(
        expect.objectContaining({ name: volume.name, mountPath: configMap.JOBS_DIR }),
      );
    }
    expect(configMap.JOBS_GATEWAY_URL).toBe(`http://gateway:${configMap.GATEWAY_PORT}/graphql`);
    expect(named('Service', 'gateway').spec.ports[0].port).toBe(Number(configMap.GATEWAY_PORT));
  });

  it('probe /healthz and /readyz on the port each process listens on', () => {
    for (const deployment of deployments) {
      const [container] = deployment.spec.template.spec.containers;
      const port = rolePort(container.command, kubeEnv);
      expect(port).not.toBeNull();
      const probe = (kind: string) => ({
        path: container[kind].httpGet.path,
        port: containerPort(container, container[kind].httpGet.port),
      });
      const where = `Deployment/${deployment.metadata.name}`;
      expect({ where, ...probe('readinessProbe') }).toEqual({ where, path: '/readyz', port });
      expect({ where, ...probe('livenessProbe') }).toEqual({ where, path: '/healthz', port });
      expect({ where, ...probe('startupProbe') }).toEqual({ where, path: '/healthz', port });
    }
    // compose: the image's health check, which finds the port from the command (scripts/healthcheck.ts).
    const ports = () => registryPorts(read('subgraphs/registry.ts'));
    expect(ports()).toEqual(Object.fromEntries(SUBGRAPHS.map((entry) => [entry.name, entry.port])));
    for (const [name, service] of appServices) {
      const env = composeEnv(service);
      if (name === 'migrate') {
        expect(service.healthcheck).toEqual({ disable: true });
        expect(healthPort(service.command, env, ports)).toBeNull();
        continue;
      }
      expect(service.healthcheck.test.slice(-2)).toEqual(['scripts/healthcheck.ts', '/readyz']);
      // As PID 1 sees it behind compose's init.
      expect({
        name,
        port: healthPort(commandWords(['/sbin/docker-init', '--', ...service.command].join('\0')), env, ports),
      }).toEqual({
        name,
        port: rolePort(service.command, env),
      });
    }
    expect(healthPort(imageCommand, {}, ports)).toBe(4000);
  });

  it('give SIGTERM more time than SHUTDOWN_GRACE_MS before SIGKILL', () => {
    expect(argumentsOf(lastOf('STOPSIGNAL')!)).toBe('SIGTERM');
    for (const [name, service] of appServices) {
      const graceSeconds = loadConfig(composeEnv(service)).SHUTDOWN_GRACE_MS / 1000;
      expect(service.stop_signal).toBe('SIGTERM');
      expect({ name, enough: seconds(service.stop_grace_period) >= graceSeconds + 2 }).toEqual({ name, enough: true });
    }
    const graceSeconds = loadConfig(kubeEnv).SHUTDOWN_GRACE_MS / 1000;
    for (const deployment of deployments) {
      const pod = deployment.spec.template.spec;
      const preStop = pod.containers[0].lifecycle?.preStop?.exec?.command;
      const pause = preStop ? Number(preStop.at(-1)) : 0;
      const where = `Deployment/${deployment.metadata.name}`;
      expect({ where, enough: pod.terminationGracePeriodSeconds >= pause + graceSeconds + 5 }).toEqual({
        where,
        enough: true,
      });
    }
  });

  it('start in order: migrations first, subgraphs once migrated, the gateway once they are ready', () => {
    expect(composeServices.migrate.depends_on.postgres.condition).toBe('service_healthy');
    for (const { name } of SUBGRAPHS) {
      expect(composeServices[name].depends_on.migrate.condition).toBe('service_completed_successfully');
      expect(composeServices.gateway.depends_on[name].condition).toBe('service_healthy');
    }
    expect(composeServices.worker.depends_on.migrate.condition).toBe('service_completed_successfully');
    expect(composeServices.migrate.restart).toBe('no');
    const job = named('Job', 'storefront-migrate');
    expect(job.spec.template.spec.restartPolicy).toBe('OnFailure');
  });

  it('run hardened pods with requests and limits, scaled and protected', () => {
    const CURRENT_APIS = ['v1', 'apps/v1', 'batch/v1', 'policy/v1', 'autoscaling/v2'];
    for (const object of kubeObjects) expect(CURRENT_APIS).toContain(object.apiVersion);
    expect(named('Namespace', kustomization.namespace)).toBeDefined();
    for (const object of [...deployments, ...ofKind('Job')]) {
      const pod = object.spec.template.spec;
      const where = `${object.kind}/${object.metadata.name}`;
      expect({ where, nonRoot: pod.securityContext.runAsNonRoot, user: pod.securityContext.runAsUser > 0 }).toEqual({
        where,
        nonRoot: true,
        user: true,
      });
      for (const container of pod.containers) {
        expect({ where, securityContext: container.securityContext }).toEqual({
          where,
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          },
        });
        // A read-only root: /tmp (npm's logs, tsx's cache) is an emptyDir.
        const tmp = container.volumeMounts.find((mount: any) => mount.mountPath === '/tmp');
        expect(pod.volumes.find((volume: any) => volume.name === tmp?.name)?.emptyDir).toBeDefined();
        for (const kind of ['requests', 'limits'])
          expect({ where, kind, keys: Object.keys(container.resources[kind]).sort() }).toEqual({
            where,
            kind,
            keys: ['cpu', 'memory'],
          });
      }
    }
    const hpa = named('HorizontalPodAutoscaler', 'gateway');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'gateway' });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    // The autoscaler owns the gateway's replicas: applying the manifests again must not reset them.
    expect(named('Deployment', 'gateway').spec.replicas).toBeUndefined();
    for (const budget of ofKind('PodDisruptionBudget')) {
      const targets = deployments.filter((d) =>
        matches(budget.spec.selector.matchLabels, d.spec.template.metadata.labels),
      );
      expect(targets.map((d) => d.metadata.name)).toEqual([budget.metadata.name]);
    }
    for (const service of ofKind('Service')) {
      const targets = deployments.filter((d) => matches(service.spec.selector, d.spec.template.metadata.labels));
      expect(targets.map((d) => d.metadata.name)).toEqual([service.metadata.name]);
    }
  });

  it('build an image that runs as a user, checks its health and has production dependencies only', () => {
    const user = argumentsOf(lastOf('USER')!);
    expect(user).toMatch(/^[1-9]\d*(:\d+)?$/);
    expect(lastOf('HEALTHCHECK')!.getTextContent()).toMatch(
      /CMD \["node", .*"scripts\/healthcheck\.ts", "\/healthz"\]$/,
    );
    expect(npmScript(imageCommand).script in scripts).toBe(true);
    const runs = (stage: string | undefined) =>
      stageInstructions(stage)
        .filter((instruction) => instruction.getKeyword() === 'RUN')
        .map(argumentsOf)
        .join('\n');
    const copies = finalInstructions.filter((instruction) => instruction.getKeyword() === 'COPY').map(argumentsOf);
    const copiedFrom = (path: string) =>
      copies.find((copy) => copy.includes(` /app/${path} `))?.match(/--from=(\S+)/)?.[1];
    // node_modules: `npm ci` of the production dependencies, without install scripts.
    expect(runs(copiedFrom('node_modules'))).toMatch(/npm ci --omit=dev --ignore-scripts/);
    // What postinstall makes (it needs devDependencies) comes from the stage that runs it.
    expect(scripts.postinstall).toBe('npm run generate && npm run build:explorer');
    const built = copiedFrom('generated');
    expect(runs(built)).toContain(scripts.postinstall);
    for (const path of ['subgraphs', 'gateway/explorer/dist']) expect(copiedFrom(path)).toBe(built);
    // tsx runs the TypeScript: a production dependency.
    expect(dependencies).toHaveProperty('tsx');
    // Generated and installed files come from the build, never from the build context.
    const ignored = read('.dockerignore').split('\n');
    for (const path of ['node_modules', 'generated', '**/__generated__', 'gateway/explorer/dist', '.env', '.git'])
      expect(ignored).toContain(path);
  });

  it('load, in every process the image runs, only production dependencies', () => {
    const sources = ['lib', 'gateway', 'subgraphs', 'prisma']
      .flatMap((dir) =>
        (readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' }) as string[]).map((file) =>
          join(dir, file),
        ),
      )
      .filter((file) => /\.(ts|tsx|jsx)$/.test(file) && !file.endsWith('.test.ts') && !file.includes('__generated__'))
      .concat(['scripts/start.ts', 'scripts/start-subgraph.ts', 'scripts/start-worker.ts', 'scripts/healthcheck.ts']);
    const imports =
      /(?:^|\n)\s*(?:import|export)\s+(?!type\b)(?:[^'"]*?\sfrom\s+)?'([^']+)'|import\(\s*'([^']+)'\s*\)|require\(\s*'([^']+)'\s*\)/g;
    const missing: string[] = [];
    for (const file of sources) {
      for (const match of read(file).matchAll(imports)) {
        const specifier = match[1] ?? match[2] ?? match[3]!;
        if (specifier.startsWith('.') || specifier.startsWith('node:')) continue;
        const name = specifier
          .split('/')
          .slice(0, specifier.startsWith('@') ? 2 : 1)
          .join('/');
        if (!(name in dependencies)) missing.push(`${file}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
  });
});

// --------------------------------------------------------------------------------------------- the commands

interface Running {
  name: string;
  child: ChildProcess;
  env: Record<string, string>;
  port: number | null;
  output(): string;
  exited: Promise<number | null>;
}

describe("the image's commands, run here with compose.yaml's environment", () => {
  const processes: Running[] = [];
  let scratch = '';
  /** One for every process, as compose gives them one Redis (its keys are deleted afterwards). */
  const namespace = `deploy-test-${randomBytes(4).toString('hex')}`;
  const redisUrl =
    process.env.TEST_REDIS_AVAILABLE === '0' ? '' : (process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
  let database: string | undefined;
  let migrateOutput = '';
  let gatewayUrl = '';

  /**
   * A service's environment as compose gives it, on this machine: the image's ENV first, then the service's;
   * service names become 127.0.0.1 and each port a free one (every URL follows), the database a fresh one, the
   * writable folders fresh ones. Only PATH comes from here.
   */
  let ports: Map<number, number>;
  function localEnv(service: any, databaseUrl: string): Record<string, string> {
    const imageEnv = Object.fromEntries(
      finalInstructions
        .filter((instruction) => instruction.getKeyword() === 'ENV')
        .flatMap((instruction: any) => instruction.getProperties())
        .map((property: any) => [property.getName(), property.getValue()]),
    );
    const env: Record<string, string> = { ...imageEnv, ...composeEnv(service) };
    const hosts = Object.keys(composeServices).join('|');
    for (const [key, value] of Object.entries(env)) {
      if (/_PORT$/.test(key)) env[key] = String(ports.get(Number(value)) ?? value);
      env[key] = env[key]!.replace(
        new RegExp(`^http://(${hosts}):(\\d+)`),
        (_whole, _host, port: string) => `http://127.0.0.1:${ports.get(Number(port))}`,
      );
    }
    Object.assign(env, {
      PATH: process.env.PATH!,
      HOME: scratch,
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      REDIS_NAMESPACE: namespace,
      DATA_DIR: join(scratch, 'data'),
      NPM_CONFIG_CACHE: join(scratch, 'npm'),
      LOG_LEVEL: 'warn',
    });
    if (env.JOBS_DIR) env.JOBS_DIR = join(scratch, 'jobs');
    return env;
  }

  function run(name: string, env: Record<string, string>): Running {
    const service = composeServices[name];
    const [command, ...args] = service.command as string[];
    const child = spawn(command!, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout!.on('data', (chunk) => (output += chunk));
    child.stderr!.on('data', (chunk) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const running = { name, child, env, port: rolePort(service.command, env), output: () => output, exited };
    processes.push(running);
    return running;
  }

  async function ready(running: Running, timeoutMs = 40_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void running.exited.then(() => (exited = true));
    while (Date.now() < deadline && !exited) {
      const status = await fetch(`http://127.0.0.1:${running.port}/readyz`)
        .then((response) => response.status)
        .catch(() => 0);
      if (status === 200) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`${running.name} was not ready (${exited ? 'it exited' : 'in time'}):\n${running.output()}`);
  }

  beforeAll(async () => {
    const adminUrl = process.env.TEST_ADMIN_URL;
    const template = process.env.TEST_TEMPLATE_DB;
    if (!adminUrl || !template) throw new Error('Run through jest: test/global-setup.ts prepares the database server.');
    scratch = mkdtempSync(join(tmpdir(), 'storefront-deploy-run-'));
    // An empty database (named after the template, so global teardown drops it too), migrated by the migrate service.
    database = `${template}_deploy_${randomBytes(4).toString('hex')}`;
    await adminQuery(adminUrl, `CREATE DATABASE ${pg.escapeIdentifier(database)}`);
    const databaseUrl = withDatabase(adminUrl, database);
    const defaults = [...new Set(Object.values(composeEnv(composeServices.gateway)).filter((v) => /^\d{4}$/.test(v)))];
    ports = new Map(await Promise.all(defaults.map(async (port) => [Number(port), await freePort()] as const)));
    mkdirSync(join(scratch, 'jobs'), { recursive: true });

    const migrate = run('migrate', localEnv(composeServices.migrate, databaseUrl));
    expect(await migrate.exited).toBe(0);
    migrateOutput = migrate.output();
    // The smallest fixture (100 users, 50 products, 2,000 reviews), so a query crosses the subgraphs.
    await seed(databaseUrl, generateDataset(1));
    // All at once (compose orders them by health; here that would only add up their start-up times).
    const servers = [...SUBGRAPHS.map(({ name }) => name), 'gateway', 'worker'].map((name) =>
      run(name, localEnv(composeServices[name], databaseUrl)),
    );
    await Promise.all(servers.map((running) => ready(running)));
    gatewayUrl = `http://127.0.0.1:${servers.find((running) => running.name === 'gateway')!.port}/graphql`;
  }, 90_000);

  afterAll(async () => {
    for (const running of processes) {
      try {
        process.kill(-running.child.pid!, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    if (database)
      await adminQuery(
        process.env.TEST_ADMIN_URL!,
        `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`,
      );
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    if (redisUrl) {
      const redis = createClient({ url: redisUrl });
      await redis.connect();
      try {
        for await (const keys of redis.scanIterator({ MATCH: `${namespace}*`, COUNT: 1000 }))
          if (keys.length) await redis.del(keys);
      } finally {
        redis.destroy();
      }
    }
  });

  it('migrate applies every migration, and exits 0', () => {
    const migrations = readdirSync(join(ROOT, 'prisma', 'migrations'), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
    expect(migrateOutput).toContain(`Applied ${migrations.sort().join(', ')}`);
  });

  it('every server answers /healthz and /readyz on its port, and so does the health check of the image', () => {
    const servers = processes.filter((running) => running.port !== null);
    expect(servers.map((running) => running.name).sort()).toEqual(
      ['gateway', 'worker', ...SUBGRAPHS.map((entry) => entry.name)].sort(),
    );
    const check = (port: number, path: string) =>
      spawnSync(
        process.execPath,
        ['--disable-warning=MODULE_TYPELESS_PACKAGE_JSON', 'scripts/healthcheck.ts', path, String(port)],
        { cwd: ROOT, encoding: 'utf8' },
      );
    for (const running of servers) {
      for (const path of ['/healthz', '/readyz']) {
        const result = check(running.port!, path);
        expect({ server: running.name, path, status: result.status, said: result.stderr }).toEqual({
          server: running.name,
          path,
          status: 0,
          said: '',
        });
      }
    }
    // Without a port, the health check finds it from PID 1's command line, as /proc has it for npm (its title).
    const ports = () => registryPorts(read('subgraphs/registry.ts'));
    for (const running of servers.filter(() => existsSync('/proc/self/cmdline'))) {
      const cmdline = readFileSync(`/proc/${running.child.pid}/cmdline`, 'utf8');
      expect({ server: running.name, port: healthPort(commandWords(cmdline), running.env, ports) }).toEqual({
        server: running.name,
        port: running.port,
      });
    }
    const gone = check(1, '/healthz');
    expect(gone.status).toBe(1);
    expect(gone.stderr).toMatch(/127\.0\.0\.1:1\/healthz/);
  });

  it('the gateway answers a query across the subgraphs', async () => {
    const response = await fetch(gatewayUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query:
          '{ products(first: 3) { edges { node { title reviews(first: 2) { edges { node { rating author { displayName } } } } } } } }',
      }),
    });
    const body: any = await response.json();
    expect(response.status).toBe(200);
    expect(body.errors).toBeUndefined();
    // Products from catalog, their reviews from reviews, the reviews' authors from accounts.
    expect(body.data.products.edges).toHaveLength(3);
    const reviews = body.data.products.edges.flatMap((edge: any) => edge.node.reviews.edges);
    expect(reviews.length).toBeGreaterThan(0);
    for (const review of reviews) expect(review.node.author.displayName).toEqual(expect.any(String));
  });

  it('a bulk query runs on the worker, which writes its result to JOBS_DIR, and the gateway serves it from there', async () => {
    const gateway = processes.find((running) => running.name === 'gateway')!;
    const config = loadConfig(gateway.env);
    const client = new pg.Client({ connectionString: gateway.env.DATABASE_URL });
    await client.connect();
    const { rows } = await client.query<{ id: string }>('SELECT id FROM users LIMIT 1').finally(() => client.end());
    const token = await issueToken({
      secret: config.JWT_SECRET!,
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      userId: rows[0]!.id,
    });
    const base = gatewayUrl.replace(/\/graphql$/, '');
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const accepted = await fetch(`${base}/jobs/bulk-query`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ query: '{ products { edges { node { id title } } } }' }),
    });
    expect(accepted.status).toBe(202);
    const location = accepted.headers.get('location')!;
    let job: any;
    for (const deadline = Date.now() + 15_000; Date.now() < deadline;) {
      job = await (await fetch(`${base}${location}`, { headers })).json();
      if (job.status === 'COMPLETED' || job.status === 'FAILED') break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(job).toMatchObject({ status: 'COMPLETED', objectCount: 50 });
    expect(readdirSync(gateway.env.JOBS_DIR!)).toEqual([`${job.id}.jsonl`]);
    const result = await fetch(`${base}${job.url}`);
    expect(result.status).toBe(200);
    expect((await result.text()).trim().split('\n')).toHaveLength(50);
  });

  it('on SIGTERM (to npm, as the container runtime sends it) every process drains and exits 0', async () => {
    const running = processes.filter((entry) => entry.port !== null);
    const graceMs = loadConfig(composeEnv(composeServices.gateway)).SHUTDOWN_GRACE_MS;
    // The worker first (its pages go through the gateway), then the gateway, then the subgraphs.
    const order = ['worker', 'gateway', ...SUBGRAPHS.map((entry) => entry.name)];
    for (const name of order) {
      const entry = running.find((candidate) => candidate.name === name)!;
      const started = Date.now();
      entry.child.kill('SIGTERM');
      const code = await entry.exited;
      expect({ name, code, output: code === 0 ? '' : entry.output() }).toEqual({ name, code: 0, output: '' });
      expect(Date.now() - started).toBeLessThan(graceMs);
    }
  });
});
