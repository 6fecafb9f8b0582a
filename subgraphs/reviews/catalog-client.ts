import { ANONYMOUS } from '../../lib/authorization';
import { clientError, ErrorCode } from '../../lib/errors';
import { IDENTITY_HEADER, type IdentitySigner } from '../../lib/identity';

export interface CatalogClient {
  /** Whether the catalog knows a product with this id. */
  productExists(id: string): Promise<boolean>;
}

const PRODUCT_BY_KEY =
  'query ProductExists($representations: [_Any!]!) { _entities(representations: $representations) { ... on Product { id } } }';

/**
 * Asks the catalog subgraph, through its federation `_entities` field, whether a product exists:
 * the reviews subgraph never reads the catalog's tables.
 */
export function createCatalogClient(url: string, signIdentity: IdentitySigner, timeoutMs = 2_000): CatalogClient {
  return {
    async productExists(id) {
      let body: { data?: { _entities?: Array<{ id: string } | null> }; errors?: unknown[] };
      try {
        const request = JSON.stringify({
          query: PRODUCT_BY_KEY,
          variables: { representations: [{ __typename: 'Product', id }] },
        });
        const response = await fetch(url, {
          method: 'POST',
          // Whether a product exists does not depend on who asks: the call is signed as anonymous.
          headers: { 'content-type': 'application/json', [IDENTITY_HEADER]: await signIdentity(ANONYMOUS, request) },
          body: request,
          signal: AbortSignal.timeout(timeoutMs),
        });
        body = (await response.json()) as typeof body;
      } catch {
        body = {};
      }
      const entities = body.data?._entities;
      if (!Array.isArray(entities)) {
        throw clientError(ErrorCode.DEPENDENCY_UNAVAILABLE, 'The catalog is unavailable; try again shortly.', {
          service: 'catalog',
        });
      }
      return entities[0] != null;
    },
  };
}
