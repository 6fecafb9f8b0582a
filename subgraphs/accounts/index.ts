// First: tracing must patch modules before anything loads them.
import '../../lib/instrumentation';
import { runStandalone } from '../../lib/standalone';
import { accountsSubgraph } from './server';

runStandalone('accounts', accountsSubgraph);
