// First: tracing must patch modules before anything loads them.
import '../../lib/instrumentation';
import { runStandalone } from '../../lib/standalone';
import { reviewsSubgraph } from './server';

runStandalone('reviews', reviewsSubgraph);
