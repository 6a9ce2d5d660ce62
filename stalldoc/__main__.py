from stalldoc.cli import main

main(prog_name="stalldoc")
