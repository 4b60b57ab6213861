"""neutron's API as uwsgi loads it, with SQLAlchemy's mappers configured up front.

Installed by kickstack's neutron_server role. neutron 29 reads relationship attributes that
SQLAlchemy adds to a model only when the mappers are configured (for example
Port.port_forwardings, a backref), which otherwise happens at the first database query. A
worker whose first request lists ports with `fields=` (what nova sends when it builds or
deletes a server) fails with AttributeError. Configuring the mappers once, after neutron has
loaded its plugins and models, makes every request see the same models.
"""
from neutron.wsgi.api import application  # noqa: F401  (loads the configuration and plugins)
from sqlalchemy import orm

orm.configure_mappers()
