import { addressBlock, identifyClient } from './rate-limits';

describe('addressBlock', () => {
  it('limits an IPv6 address by its /64, an IPv4 (also IPv4-mapped) address by itself', () => {
    expect(addressBlock('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(addressBlock('2001:0db8:0001:0002:ffff::1')).toBe('2001:db8:1:2::/64');
    expect(addressBlock('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64');
    expect(addressBlock('::1')).toBe('0:0:0:0::/64');
    expect(addressBlock('203.0.113.7')).toBe('203.0.113.7');
    expect(addressBlock('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect([addressBlock(undefined), addressBlock('not an address')]).toEqual(['unknown', 'unknown']);
  });

  it('is the key an anonymous client is charged to', () => {
    expect(identifyClient(null, null, '2001:db8:1:2::99')).toEqual({ kind: 'ip', key: 'ip:2001:db8:1:2::/64' });
  });
});
