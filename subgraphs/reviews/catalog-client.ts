import { ANONYMOUS } from '../../lib/authorization';
import { dependencyUnavailable } from '../../lib/errors';
import { IDENTITY_HEADER, type IdentitySigner } from '../../lib/identity';
import { READ_AFTER_HEADER, READ_PRIMARY, type ReadAfterSigner } from '../../lib/read-replicas';

export interface CatalogClient {
  /** Whether the catalog knows a product with this id; DEPENDENCY_UNAVAILABLE when the catalog cannot say. */
  productExists(id: string): Promise<boolean>;
}

const PRODUCT_BY_KEY =
  'query ProductExists($representations: [_Any!]!) { _entities(representations: $representations) { ... on Product { id } } }';

/** What the reviews subgraph answers when the catalog cannot say whether a product exists. */
export const catalogUnavailable = () =>
  dependencyUnavailable('catalog', 'The catalog is unavailable; try again shortly.');

interface EntitiesAnswer {
  data?: { _entities?: Array<{ id: string } | null> } | null;
  errors?: unknown[];
}

/**
 * Asks the catalog subgraph, through its federation `_entities` field, whether a product exists:
 * the reviews subgraph never reads the catalog's tables.
 *
 * Only a clean answer counts: HTTP 2xx, a JSON body with `_entities` and no `errors`. A null entity next
 * to an error is the catalog failing to look the product up (its database down), not the product
 * missing; that, a non-2xx status, a timeout or a refused connection are all DEPENDENCY_UNAVAILABLE.
 */
export function createCatalogClient(
  url: string,
  signIdentity: IdentitySigner,
  timeoutMs = 2_000,
  /** Asks the catalog to read its primary (with read replicas): the answer decides a write. Defaults to none. */
  signReadAfter?: ReadAfterSigner,
): CatalogClient {
  return {
    async productExists(id) {
      let body: EntitiesAnswer | undefined;
      try {
        const request = JSON.stringify({
          query: PRODUCT_BY_KEY,
          variables: { representations: [{ __typename: 'Product', id }] },
        });
        // Whether a product exists does not depend on who asks: the call is signed as anonymous.
        const identity = await signIdentity(ANONYMOUS, request);
        const response = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            [IDENTITY_HEADER]: identity,
            ...(signReadAfter && { [READ_AFTER_HEADER]: signReadAfter(READ_PRIMARY, identity) }),
          },
          body: request,
          signal: AbortSignal.timeout(timeoutMs),
        });
        if (response.ok) body = (await response.json()) as EntitiesAnswer;
        else await response.body?.cancel();
      } catch {
        body = undefined;
      }
      const entities = body?.data?._entities;
      if (!Array.isArray(entities) || entities.length !== 1 || (body?.errors?.length ?? 0) > 0)
        throw catalogUnavailable();
      return entities[0] != null;
    },
  };
}
