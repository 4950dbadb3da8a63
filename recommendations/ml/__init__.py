"""Pure ML code of visrec: no Django imports anywhere below this package."""
