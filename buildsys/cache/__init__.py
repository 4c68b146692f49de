"""The cache: what is stored where (stores), file digests (stat), blobs (cas), action records
(action_cache), keys and lookup, the remote cache and its record signing, and garbage collection.

Every store under the cache directory holds plain data, never pickle, and heals: an entry that
cannot be read is a miss, and a store that cannot be read is moved aside and started afresh.
"""
