"""The API's routes, one module per resource; each module's `router(ctl)` builds its APIRouter around the controller."""
