"""`benchwatch wait`: options, the polling loop, its views and the JUnit writer."""
