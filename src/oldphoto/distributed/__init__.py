"""Scale-out mode: what lets several web nodes and worker machines share one job system (SPEC "Scale-out").

The job store is the same SQLAlchemy store on PostgreSQL (OLDPHOTO_DATABASE_URL); Redis (OLDPHOTO_BROKER_URL) carries
live events between processes. The durable log stays the truth: Redis only makes events arrive sooner.
"""
