"""Hardware drivers: power sensors (INA226, Linux hwmon, jtop)."""
