import { runStandalone } from '../../lib/standalone';
import { reviewsSubgraph } from './server';

runStandalone('reviews', reviewsSubgraph);
