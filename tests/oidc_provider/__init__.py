"""A real, OpenID Certified provider for the tests: panva's ``oidc-provider`` for Node.js,
pinned in ``package.json`` and ``package-lock.json`` beside this module, configured by
``server.mjs`` and run from Python by ``provider.OpenIDProvider``."""
