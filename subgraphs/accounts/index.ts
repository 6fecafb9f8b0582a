import { runStandalone } from '../../lib/standalone';
import { accountsSubgraph } from './server';

runStandalone('accounts', accountsSubgraph);
