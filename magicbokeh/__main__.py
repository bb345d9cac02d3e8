from .cli import main
from .entrypoint import exit_process

exit_process(main())
