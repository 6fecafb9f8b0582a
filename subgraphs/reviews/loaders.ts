import { keyedLoader } from '../../lib/loaders';
import type { ReviewsDb } from './context';

export interface RatingStats {
  productId: string;
  reviewCount: number;
  averageRating: number | null;
}

/** Created once per request: batching within a request, never a cache across requests. */
export function createLoaders(db: ReviewsDb) {
  return {
    reviewById: keyedLoader((ids: string[]) => db.review.findMany({ where: { id: { in: ids } } }), (review) => review.id),
    /** Count and mean rating for a batch of products: one grouped statement. */
    ratingStatsByProduct: keyedLoader(
      async (productIds: string[]): Promise<RatingStats[]> => {
        const groups = await db.review.groupBy({
          by: ['productId'],
          where: { productId: { in: productIds } },
          _count: { _all: true },
          _avg: { rating: true },
        });
        return groups.map((group) => ({ productId: group.productId, reviewCount: group._count._all, averageRating: group._avg.rating }));
      },
      (stats) => stats.productId,
    ),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
