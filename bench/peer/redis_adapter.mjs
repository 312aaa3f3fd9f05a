// The provider's storage in Redis, shared by every worker process: oidc-provider's default
// store is per-process memory, under which a client assertion replayed to the other worker
// would be accepted. This follows the adapter interface its documentation describes.
import Redis from 'ioredis';

const redis = new Redis(process.env.PEER_REDIS_URL || 'redis://127.0.0.1:6379/0', {
  keyPrefix: `${process.env.PEER_REDIS_PREFIX || 'casebroker-bench-peer'}:`,
});

const grantKey = (grantId) => `grant:${grantId}`;

export default class RedisAdapter {
  constructor(name) {
    this.name = name;
  }

  key(id) {
    return `${this.name}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const multi = redis.multi();
    if (expiresIn) multi.set(key, JSON.stringify(payload), 'EX', expiresIn);
    else multi.set(key, JSON.stringify(payload));
    if (payload.grantId) {
      multi.rpush(grantKey(payload.grantId), key);
      if (expiresIn) multi.expire(grantKey(payload.grantId), expiresIn);
    }
    if (payload.userCode) multi.set(`userCode:${payload.userCode}`, id, 'EX', expiresIn);
    if (payload.uid) multi.set(`uid:${payload.uid}`, id, 'EX', expiresIn);
    await multi.exec();
  }

  async find(id) {
    const data = await redis.get(this.key(id));
    return data ? JSON.parse(data) : undefined;
  }

  async findByUid(uid) {
    const id = await redis.get(`uid:${uid}`);
    return id ? this.find(id) : undefined;
  }

  async findByUserCode(userCode) {
    const id = await redis.get(`userCode:${userCode}`);
    return id ? this.find(id) : undefined;
  }

  async destroy(id) {
    await redis.del(this.key(id));
  }

  async revokeByGrantId(grantId) {
    // ioredis prefixes commands' keys, not the keys stored as list values: those are bare.
    const keys = await redis.lrange(grantKey(grantId), 0, -1);
    const multi = redis.multi();
    for (const key of keys) multi.del(key);
    multi.del(grantKey(grantId));
    await multi.exec();
  }

  async consume(id) {
    const payload = await this.find(id);
    if (!payload) return;
    payload.consumed = Math.floor(Date.now() / 1000);
    const ttl = await redis.ttl(this.key(id));
    await this.upsert(id, payload, ttl > 0 ? ttl : undefined);
  }
}
