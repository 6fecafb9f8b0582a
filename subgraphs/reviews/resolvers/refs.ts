/** An entity owned by another subgraph, known here only by its key. */
export interface EntityRef {
  id: string;
}

export interface DeleteReviewResult {
  deletedReviewId: string;
  productId: string;
}
