import { runStandalone } from '../../lib/standalone';
import { catalogSubgraph } from './server';

runStandalone('catalog', catalogSubgraph);
